"""Fixtures shared across parts."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# One export cache of the evidence backbone's and the embedding encoder's ONNX graphs for the whole run (servers
# started by tests inherit it): each test's own data_dir would otherwise export the same graphs again, seconds each.
os.environ.setdefault("ECHO_IAD__EVIDENCE__RUNTIME_CACHE", os.path.join(tempfile.gettempdir(), "echo-iad-test-runtime"))
os.environ.setdefault(
    "ECHO_IAD__EMBEDDING__RUNTIME_CACHE", os.path.join(tempfile.gettempdir(), "echo-iad-test-runtime")
)


@pytest.fixture(scope="session")
def offline_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of offline test models for the whole session (the tiny Qwen2-VL is built once)."""
    return tmp_path_factory.mktemp("models")
