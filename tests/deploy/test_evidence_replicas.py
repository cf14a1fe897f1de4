"""Cluster mode: evidence replicas share one bank store (an fsspec URL) and see each other's changes.

Two EvidenceService instances stand for two Serve replicas: what one adds, the other analyzes against
once evidence.reload_check_s has passed; a recalibration and a deletion reach it the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.common.errors import FailedPrecondition
from services.common.images import encode_png
from services.evidence.config import EvidenceSettings
from services.evidence.core import EvidenceService
from services.mmad.synth import draw_defect, render_normal

KEY = ("line-1", "Synthetic", "woven_fabric")


@pytest.mark.parametrize("scheme", ["", "file://"], ids=["folder", "fsspec-url"])
async def test_a_bank_added_by_one_replica_is_used_and_followed_by_another(tmp_path: Path, scheme: str) -> None:
    settings = EvidenceSettings(
        device="cpu", input_size=160, bank_store=f"{scheme}{tmp_path / 'banks'}", reload_check_s=0.0
    )
    writer, reader = EvidenceService.from_settings(settings), EvidenceService.from_settings(settings)
    rng = np.random.default_rng(5)
    normals = [encode_png(render_normal("woven_fabric", rng, 128)) for _ in range(6)]
    bad, _, _ = draw_defect(render_normal("woven_fabric", rng, 128), "woven_fabric", "hole", rng)
    try:
        first = writer.add_normal_images(*KEY, normals[:4])
        seen = await reader.analyze(*KEY, encode_png(bad))
        assert seen.bank_images == 4 and seen.threshold == pytest.approx(first.bank.calibration.threshold)

        grown = writer.add_normal_images(*KEY, normals[4:])  # a new generation, recalibrated
        assert grown.bank.generation > first.bank.generation
        again = await reader.analyze(*KEY, encode_png(bad))
        assert again.bank_images == 6 and again.threshold == pytest.approx(grown.bank.calibration.threshold)
        assert [b.generation for b in reader.stats(*KEY)] == [grown.bank.generation]

        assert writer.delete_bank(*KEY) == 6
        with pytest.raises(FailedPrecondition, match="no evidence bank"):
            await reader.analyze(*KEY, encode_png(bad))
    finally:
        await writer.close()
        await reader.close()
