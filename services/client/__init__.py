"""Client library for factory-line programs (see client.py)."""

from services.client.client import AsyncInspectorClient, InspectorClient, build_inspect_request

__all__ = ["AsyncInspectorClient", "InspectorClient", "build_inspect_request"]
