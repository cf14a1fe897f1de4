"""Fixtures: a small synthetic dataset (built once) and a hand-written folder in the real MMAD layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmad_fixtures import SYNTH_PER_CATEGORY, SYNTH_TEMPLATES, write_real_layout

from services.mmad.loader import MMADDataset, load_dataset
from services.mmad.synth import synthesize


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "d"
    return synthesize(
        out, seed=0, per_category=SYNTH_PER_CATEGORY, templates_per_category=SYNTH_TEMPLATES, progress=False
    )


@pytest.fixture(scope="session")
def synth_ds(synth_root: Path) -> MMADDataset:
    return load_dataset(synth_root)


@pytest.fixture
def real_root(tmp_path: Path) -> Path:
    return write_real_layout(tmp_path / "MMAD")
