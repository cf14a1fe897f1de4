"""Plain values more than one stage speaks in, defined once (field names as their echo.v1 messages).

A box leaves the evidence stage and lands in the gateway's trace; a product count leaves the retrieval
stage and lands in the gateway's line and memory listings. One dataclass each, so the two ends cannot
drift apart; `vars()` of either is the keyword set of its proto message.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Box:
    """An anomalous region in query pixels (x1, y1 exclusive), its peak score and MMAD position words
    (echo.v1.EvidenceBox)."""

    x0: int
    y0: int
    x1: int
    y1: int
    score: float
    region: str  # MMAD's position words: "top left", "center", ...
    area: float  # share of the image
    above_threshold: bool  # False: the most anomalous spot of an image judged normal


@dataclass
class ProductCount:
    """Normal images of one product on one line (echo.v1.CategoryCount)."""

    line_id: str
    dataset: str
    category: str
    count: int
