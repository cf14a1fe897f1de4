"""Concurrent callers of the text embedder share forwards: each gets its own rows, as if it had called alone."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
import torch

from services.knowledge.embedder import TextEmbedder

CALLERS = 6


def _gate_first_forward(embedder: TextEmbedder, monkeypatch: pytest.MonkeyPatch, waiting: int) -> list[int]:
    """Hold the first forward until `waiting` other callers queue behind it; record each forward's size."""
    real = embedder.model.encode
    sizes: list[int] = []

    def encode(texts: list[str], **kwargs: Any) -> Any:
        if not sizes:
            deadline = time.monotonic() + 30
            while len(embedder._waiting) < waiting and time.monotonic() < deadline:
                time.sleep(0.005)
        sizes.append(len(texts))
        return real(texts, **kwargs)

    monkeypatch.setattr(embedder.model, "encode", encode)
    return sizes


def test_callers_who_wait_on_a_forward_share_the_next_one_and_get_their_own_rows(
    embedder: TextEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    asks = [[f"a scratch on part {i}"] + [f"option {i}.{j}: a dent" for j in range(i % 3)] for i in range(CALLERS)]
    alone = [embedder.encode(texts) for texts in asks]
    sizes = _gate_first_forward(embedder, monkeypatch, CALLERS - 1)
    got: list[np.ndarray | None] = [None] * CALLERS

    def call(i: int) -> None:
        got[i] = embedder.encode(asks[i])

    # One intra-op thread while these threads run the model: each thread that runs torch ops keeps an OpenMP
    # team of its own, whose spin-waiting slows every later forward on a loaded machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        first = threading.Thread(target=call, args=(0,))
        first.start()
        while not sizes and not embedder._busy:
            time.sleep(0.001)
        others = [threading.Thread(target=call, args=(i,)) for i in range(1, CALLERS)]
        for t in others:
            t.start()
        for t in [first, *others]:
            t.join(60)
    finally:
        torch.set_num_threads(threads)
    assert sizes == [len(asks[0]), sum(len(a) for a in asks[1:])]  # two forwards for six callers
    for i in range(CALLERS):
        assert got[i] is not None and got[i].shape == alone[i].shape
        np.testing.assert_allclose(got[i], alone[i], atol=1e-5)


def test_a_failed_forward_fails_its_callers_and_the_next_forward_serves(
    embedder: TextEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = embedder.model.encode
    calls = {"n": 0}

    def encode(texts: list[str], **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("out of memory")
        return real(texts, **kwargs)

    monkeypatch.setattr(embedder.model, "encode", encode)
    with pytest.raises(RuntimeError, match="out of memory"):
        embedder.encode(["a crack"])
    assert embedder.encode(["a crack"]).shape == (1, embedder.dim)
    assert not embedder._busy and not embedder._waiting
