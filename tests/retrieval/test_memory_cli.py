"""`echo-iad memory build` ingests a dataset's templates into the memory and the evidence banks (the one ingest
path), resumably; `memory stats` counts them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from app.cli import app
from services.mmad.synth import synthesize


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(
        tmp_path_factory.mktemp("synth"), seed=3, categories=["screw", "woven_fabric"], per_category=2,
        templates_per_category=4, progress=False,
    )  # fmt: skip


def test_build_ingests_every_template_once_and_a_rerun_adds_nothing(dataset: Path, tmp_path: Path) -> None:
    config = tmp_path / "echo.yaml"
    config.write_text(
        yaml.safe_dump(
            {"data_dir": str(tmp_path / "state"), "embedding": {"device": "cpu"}, "evidence": {"input_size": 160}}
        )
    )
    runner = CliRunner()
    first = runner.invoke(app, ["memory", "build", "--data", str(dataset), "--config", str(config), "--no-progress"])
    assert first.exit_code == 0, first.output
    assert "added 8, already there 0, 8 images in line 'default'" in first.output
    again = runner.invoke(
        app, ["memory", "build", "--data", str(dataset), "--config", str(config), "--no-progress", "--line", "default"]
    )
    assert again.exit_code == 0, again.output
    assert "added 0, already there 8, 8 images" in again.output
    stats = runner.invoke(app, ["memory", "stats", "--config", str(config)])
    assert stats.exit_code == 0, stats.output
    assert "screw" in stats.output and "woven_fabric" in stats.output and "8 images" in stats.output
    assert len(list((tmp_path / "state" / "images").rglob("*.png"))) == 8
    from services.config import load_settings
    from services.evidence.bank import BankStore

    banks = BankStore(load_settings(config).evidence.bank_store).list_metas()
    assert sorted((m["category"], len(m["images"])) for m in banks) == [("screw", 4), ("woven_fabric", 4)]


def test_build_reports_a_bad_folder_and_a_memory_of_another_encoder(dataset: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    config = tmp_path / "echo.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "state"), "embedding": {"device": "cpu"}}))
    missing = runner.invoke(app, ["memory", "build", "--data", str(tmp_path / "nope"), "--config", str(config)])
    assert missing.exit_code == 1 and "is not a folder" in missing.output
    # the default creates an EfficientNet-Lite0 (1280-d) memory; a CLIP configured later is refused at once
    assert runner.invoke(app, ["memory", "stats", "--config", str(config)]).exit_code == 0
    config.write_text(
        yaml.safe_dump({"data_dir": str(tmp_path / "state"), "embedding": {"device": "cpu", "image_encoder": "clip"}})
    )
    wrong = runner.invoke(app, ["memory", "build", "--data", str(dataset), "--config", str(config)])
    assert wrong.exit_code == 1 and "has dim 1280 but the embedding model gives 64" in wrong.output
    assert "re-onboard the line's normal images" in wrong.output and wrong.output.count("\n") == 1
