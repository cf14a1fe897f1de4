"""An embedded server over a small synthetic dataset, its memory built through the Inspector's RPCs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.background import BackgroundServer

LINE = "line-a"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from services.mmad.loader import load_dataset
    from services.mmad.synth import synthesize

    root = synthesize(
        tmp_path_factory.mktemp("synth") / "d",
        seed=3,
        categories=["round_part", "screw"],
        per_category=6,
        templates_per_category=4,
        progress=False,
    )
    return load_dataset(root)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, offline_model_cache: Path, dataset) -> Iterator[BackgroundServer]:  # type: ignore[no-untyped-def]
    from services.client import InspectorClient
    from services.config import load_settings

    settings = load_settings(
        data_dir=str(tmp_path_factory.mktemp("state")),
        server={"port": 0},
        decision={"model_cache": str(offline_model_cache)},
        evidence={"input_size": 160, "auto_config": False},  # small and fixed: banks are built on every add
    )
    srv = BackgroundServer(settings).start()
    with InspectorClient(srv.address) as client:
        for ds_name, category in dataset.categories():
            rels = [r for d, c, r in dataset.templates() if (d, c) == (ds_name, category)]
            client.add_normal_images(LINE, category, [dataset.abspath(r) for r in rels], dataset=ds_name)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture()
def client(server: BackgroundServer):  # type: ignore[no-untyped-def]
    from services.client import InspectorClient

    with InspectorClient(server.address, retries=0) as c:
        yield c
