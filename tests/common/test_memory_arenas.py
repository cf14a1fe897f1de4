"""server.malloc_arenas (services/common/memory.py): glibc's arena cap is set, unless the environment already says."""

from __future__ import annotations

import pytest

from services.common.memory import limit_arenas


def test_arenas_are_capped_on_glibc_and_zero_keeps_its_default() -> None:
    assert limit_arenas(2) is True
    assert limit_arenas(0) is False


def test_malloc_arena_max_in_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_arenas(2) is False
