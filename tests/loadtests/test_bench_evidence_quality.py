"""The evidence-quality benchmark's extra normals are the split generator's own next normal images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from loadtests.bench import evidence_quality
from services.mmad.synth import synthesize


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_extra_normals_continue_the_splits_normal_queries_and_are_never_its_own(tmp_path: Path) -> None:
    small = synthesize(tmp_path / "small", seed=3, categories=["screw"], per_category=3, templates_per_category=1,
                       progress=False)  # fmt: skip
    large = synthesize(tmp_path / "large", seed=3, categories=["screw"], per_category=8, templates_per_category=1,
                       progress=False)  # fmt: skip
    b = evidence_quality
    extra = b.extra_normal_images(small, "screw", 2)
    good = large / "Synthetic/screw/image/good"
    # the small split holds normal queries 000 and 001 (indices 0, 2); its extras are 002 and 003 of the larger one
    assert [pixels(e).tolist() for e in extra] == [
        pixels((good / f"{i:03d}.png").read_bytes()).tolist() for i in (2, 3)
    ]
    own = {(small / "Synthetic/screw/image/good" / n).read_bytes() for n in ("000.png", "001.png")}
    assert not own & set(extra)
    cats = b.load_categories(small, extra_normals=2)
    assert [len(c.extra_normals) for c in cats] == [2] and len(cats[0].queries) == 3
