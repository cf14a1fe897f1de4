"""Client library for factory-line programs (client.py); errors.py says what a failed call means to a person.

The names below load on first use, so the CLI can read its exit codes (errors.py) without loading gRPC.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.client.client import AsyncInspectorClient, InspectorClient, build_inspect_request

__all__ = ["AsyncInspectorClient", "InspectorClient", "build_inspect_request"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from services.client import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
