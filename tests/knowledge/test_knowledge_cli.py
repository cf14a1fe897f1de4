"""`echo-iad knowledge ...`: list, show, validate, put (files, Redis, RPC), MMAD import/export, review loop."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from app.cli import app
from services.common.serving import start_server
from services.config import load_settings
from services.knowledge.entries import load_dir
from services.knowledge.refine import RefineCache, RefineKey
from services.knowledge.server import build_stage
from services.knowledge.stores import redis_entries

FIXTURES = Path(__file__).parent / "fixtures"
runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, ["knowledge", *args])


def test_list_show_and_validate(kb_dir: Path) -> None:
    out = _run("list", "--dir", str(kb_dir))
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0] == "MVTec/bottle\tv1\tbroken_large, broken_small, contamination"
    assert len(_run("list", "--dir", str(kb_dir), "--dataset", "synthetic").output.splitlines()) == 2
    shown = _run("show", "MVTec/bottle", "--dir", str(kb_dir))
    assert yaml.safe_load(shown.output) == load_dir(kb_dir)["MVTec/bottle"].to_dict()
    missing = _run("show", "MVTec/botle", "--dir", str(kb_dir))
    assert missing.exit_code == 1 and "closest: MVTec/bottle" in missing.output
    assert "3 entries" in _run("validate", "--dir", str(kb_dir)).output


def test_validate_names_the_broken_file_and_field(kb_dir: Path) -> None:
    path = kb_dir / "MVTec" / "bottle.yaml"
    path.write_text(
        path.read_text().replace("  contamination:\n    display_name: Contamination\n", "  contamination:\n")
    )
    out = _run("validate", "--dir", str(kb_dir))
    assert out.exit_code == 1
    assert "bottle.yaml: defects.contamination.display_name: is required" in out.output


def test_the_shipped_knowledge_base_validates() -> None:
    from services.knowledge.entries import default_root

    out = _run("validate", "--dir", str(default_root()))
    assert out.exit_code == 0 and "all valid" in out.output


def test_mmad_import_then_export(tmp_path: Path) -> None:
    out_dir, exported = tmp_path / "kb", tmp_path / "dk.json"
    imported = _run("import-mmad", str(FIXTURES / "domain_knowledge.json"), "--out", str(out_dir))
    assert imported.exit_code == 0 and "2 entries written" in imported.output
    assert sorted(load_dir(out_dir)) == ["MVTec/bottle", "VisA/candle"]
    again = _run("import-mmad", str(FIXTURES / "domain_knowledge.json"), "--out", str(out_dir))
    assert "0 entries written" in again.output and "2 existing kept" in again.output
    assert _run("export-mmad", "--out", str(exported), "--dir", str(out_dir)).exit_code == 0
    doc = json.loads(exported.read_text())
    assert doc["MVTec"]["bottle"]["broken_large"].startswith(" <Large Breakage>\n Description: A large part")


def test_put_into_a_folder_and_into_redis(kb_dir: Path, tmp_path: Path, redis_server) -> None:
    entry = load_dir(kb_dir)["Synthetic/woven_fabric"]
    file = tmp_path / "entry.yaml"
    file.write_text(entry.to_yaml().replace("A close-up of a woven textile", "A macro photo of a woven textile"))
    target = tmp_path / "other"
    assert _run("put", str(file), "--dir", str(target)).exit_code == 0
    assert load_dir(target)["Synthetic/woven_fabric"].normal.startswith("A macro photo")
    out = _run("put", str(file), "--redis", redis_server.url)
    assert out.exit_code == 0 and "version 1" in out.output
    (stored,) = redis_entries(redis_server.url)
    assert stored.normal.startswith("A macro photo")
    assert _run("put", str(file)).exit_code == 1  # where to? exactly one target


def test_put_refuses_a_malformed_file(tmp_path: Path) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text("dataset: MVTec\ncategory: bottle\n")
    out = _run("put", str(file), "--dir", str(tmp_path))
    assert out.exit_code == 1 and "bad.yaml: display_name: is required" in out.output


async def test_put_through_a_running_server(kb_dir: Path, tmp_path: Path, embedder) -> None:
    settings = load_settings(data_dir=str(tmp_path), knowledge={"dir": str(kb_dir)})
    stage = await build_stage(settings.knowledge)
    server, port, _ = await start_server([stage], "127.0.0.1", 0)
    try:
        entry = load_dir(kb_dir)["MVTec/bottle"]
        file = tmp_path / "bottle.yaml"
        file.write_text(entry.to_yaml().replace("A brown glass bottle", "A green glass bottle"))
        out = await asyncio.to_thread(_run, "put", str(file), "--server", f"127.0.0.1:{port}")
        assert out.exit_code == 0 and "MVTec/bottle stored, version 2" in out.output
        assert stage.servicer.guide.store.get("MVTec/bottle").normal.startswith("A green glass bottle")
    finally:
        await server.stop(None)
        stage.servicer.guide.close()


def test_refine_export_and_import_for_review(tmp_path: Path) -> None:
    cache_path, review = tmp_path / "refined.json", tmp_path / "review.json"
    cache = RefineCache(cache_path)
    key = RefineKey.of("MVTec", "bottle", "Defect Classification", ["Crack", "Contamination"])
    cache.put(key, "Long knowledge text.", "Short text.", "qwen2-vl")
    assert "1 refined texts" in _run("refine-export", str(review), "--cache", str(cache_path)).output
    doc = json.loads(review.read_text())
    doc["items"][0].update(refined="Checked by a person.", reviewed=True)
    review.write_text(json.dumps(doc))
    assert "1 reviewed texts imported" in _run("refine-import", str(review), "--cache", str(cache_path)).output
    got = RefineCache(cache_path).get(key, "Long knowledge text.")
    assert got is not None and got.reviewed and got.refined == "Checked by a person."
    review.write_text(json.dumps({"items": [{"dataset": "MVTec"}]}))
    bad = _run("refine-import", str(review), "--cache", str(cache_path))
    assert bad.exit_code == 1 and "items[0].category: must be a string" in bad.output


def test_context_shows_the_text_and_its_passages(kb_dir: Path, embedder) -> None:
    out = _run(
        "context",
        "Synthetic/round_part",
        "--dir",
        str(kb_dir),
        "--question",
        "There is a defect in the object. What is the type of the defect?",
        "--option",
        "A=Crack",
        "--option",
        "B=Hole",
    )
    assert out.exit_code == 0, out.output
    assert "Crack (crack):" in out.output and "Synthetic/round_part#hole.signature" in out.output
