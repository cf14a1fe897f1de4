"""Fixtures shared across parts."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def offline_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of offline test models for the whole session (the tiny Qwen2-VL is built once)."""
    return tmp_path_factory.mktemp("models")
