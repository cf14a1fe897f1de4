"""MMAD's domain_knowledge.json: import into our schema, export from it, round trips."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from services.common.errors import InvalidArgument
from services.knowledge.entries import default_root, load_dir
from services.knowledge.mmad_format import UNSPECIFIED, export_mmad, import_mmad, load_mmad, parse_text

FIXTURE = Path(__file__).parent / "fixtures" / "domain_knowledge.json"


def test_import_maps_mmad_texts_into_the_schema() -> None:
    entries = {e.id: e for e in load_mmad(FIXTURE)}
    assert sorted(entries) == ["MVTec/bottle", "VisA/candle"]
    bottle = entries["MVTec/bottle"]
    assert bottle.display_name == "Bottle"
    assert bottle.normal.startswith("The bottle mouth is a smooth, continuous ring")
    large = bottle.defect("broken_large")
    assert large.display_name == "Large Breakage"
    assert large.signature == "A large part of the bottle rim is broken off, leaving a wide gap with sharp edges."
    assert large.location == large.cause == large.effect == UNSPECIFIED  # MMAD gives a description only
    candle_bad = entries["VisA/candle"].defect("bad")
    assert (
        candle_bad.display_name == "Anomaly" and candle_bad.location == "On the wax surface or at the rim of a candle."
    )


def test_mmad_fixture_round_trips_through_our_schema() -> None:
    original = json.loads(FIXTURE.read_text())
    entries = import_mmad(original)
    exported = export_mmad(entries)
    assert set(exported) == set(original)
    assert {c: set(k) for c, k in exported["MVTec"].items()} == {c: set(k) for c, k in original["MVTec"].items()}
    for dataset, categories in original.items():
        for category, texts in categories.items():
            for key, text in texts.items():
                assert parse_text(exported[dataset][category][key]) == parse_text(text), (dataset, category, key)
    assert import_mmad(exported) == entries


def test_our_knowledge_base_survives_export_and_import(kb_dir: Path) -> None:
    for entry in [*load_dir(default_root()).values(), *load_dir(kb_dir).values()]:
        doc = json.loads(json.dumps(export_mmad([entry])))  # really through JSON
        text = doc[entry.dataset][entry.category][entry.defects[0].name]
        assert text.startswith(f" <{entry.defects[0].display_name}>\n Description: ")
        (back,) = import_mmad(doc)
        # MMAD has no place for the category's display name; everything else is kept
        assert back == dataclasses.replace(entry, display_name=back.display_name, version=0)


def test_a_malformed_domain_knowledge_file_names_the_place(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"MVTec/bottle: must be an object of texts"):
        import_mmad({"MVTec": {"bottle": {"good": 3}}})
    with pytest.raises(InvalidArgument, match=r"MVTec/bottle: defects: must be a mapping with at least one"):
        import_mmad({"MVTec": {"bottle": {"good": " <Normal>\n Description: fine."}}})
    bad = tmp_path / "dk.json"
    bad.write_text("{nope")
    with pytest.raises(InvalidArgument, match="not a readable JSON file"):
        load_mmad(bad)
