"""The one place the load tools reach the product's composition root: the embedded server, the planner's
classifier and the `serve` command. When composition moves, only these lines change.

The two classes load on first use (2.8 s of imports here): the Locust users and the drills that only start
`serve` as a child process need none of it.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.background import BackgroundServer
    from services.gateway.server import build_classifier

SERVE = [sys.executable, "-m", "app.cli", "serve"]
"""`echo-iad serve` as a child process of this interpreter (add its options)."""

_LAZY = {"BackgroundServer": "app.background", "build_classifier": "services.gateway.server"}

__all__ = ["SERVE", "BackgroundServer", "build_classifier"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
