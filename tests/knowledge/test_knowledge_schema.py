"""The knowledge schema: every shipped file is valid, and a malformed file is refused naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.common.errors import ConfigError
from services.knowledge.entries import (
    DEFECT_FIELDS,
    canonical_dataset,
    default_root,
    knowledge_files,
    load_dir,
    load_file,
    write_entry,
)

MVTEC = "bottle cable capsule carpet grid hazelnut leather metal_nut pill screw tile toothbrush transistor wood zipper"
VISA = "candle capsules cashew chewinggum fryum macaroni1 macaroni2 pcb1 pcb2 pcb3 pcb4 pipe_fryum"
LOCO = "breakfast_box juice_bottle pushpins screw_bag splicing_connectors"
GOODSAD = "cigarette_box drink_bottle drink_can food_bottle food_box food_package"
SYNTHETIC = {
    "round_part": {"scratch", "crack", "hole", "contamination", "color_defect"},
    "woven_fabric": {"hole", "contamination", "color_defect", "scratch"},
    "printed_board": {"missing_part", "misplacement", "scratch", "contamination"},
    "screw": {"scratch", "crack", "missing_part", "color_defect"},
}


def test_every_shipped_knowledge_file_is_valid() -> None:
    root = default_root()
    files = knowledge_files(root)
    entries = load_dir(root)  # raises, naming file and field, on the first bad one
    assert len(entries) == len(files)
    for entry in entries.values():
        assert entry.defects and all(d.field(f) for d in entry.defects for f in DEFECT_FIELDS)


def test_the_knowledge_base_covers_every_category_of_the_four_mmad_datasets_and_the_synthetic_one() -> None:
    entries = load_dir(default_root())
    expected = {f"MVTec/{c}" for c in MVTEC.split()} | {f"VisA/{c}" for c in VISA.split()}
    expected |= {f"MVTec-LOCO/{c}" for c in LOCO.split()} | {f"GoodsAD/{c}" for c in GOODSAD.split()}
    expected |= {f"Synthetic/{c}" for c in SYNTHETIC}
    assert sorted(expected - set(entries)) == []
    for category, defects in SYNTHETIC.items():  # the synthetic generator's defect types (SYNTH spec)
        assert {d.name for d in entries[f"Synthetic/{category}"].defects} == defects
    for category in LOCO.split():  # MVTec LOCO's two test folders are its defect types
        assert {d.name for d in entries[f"MVTec-LOCO/{category}"].defects} == {
            "logical_anomalies",
            "structural_anomalies",
        }


def test_fixture_files_load_with_schema_order_and_whitespace_folded(kb_dir: Path) -> None:
    entries = load_dir(kb_dir)
    assert sorted(entries) == ["MVTec/bottle", "Synthetic/round_part", "Synthetic/woven_fabric"]
    bottle = entries["MVTec/bottle"]
    assert [d.name for d in bottle.defects] == ["broken_large", "broken_small", "contamination"]
    assert bottle.defect("broken_large").display_name == "Large breakage"
    assert "\n" not in bottle.normal and "  " not in bottle.normal


def test_an_entry_survives_write_and_load(kb_dir: Path, tmp_path: Path) -> None:
    entry = load_dir(kb_dir)["Synthetic/round_part"]
    path = write_entry(tmp_path / "out", entry)
    assert path == tmp_path / "out" / "Synthetic" / "round_part.yaml"
    assert load_file(path) == entry


def _broken(kb_dir: Path, edit) -> Path:
    path = kb_dir / "MVTec" / "bottle.yaml"
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("edit", "field", "problem"),
    [
        (lambda d: d["defects"]["broken_small"].pop("cause"), "defects.broken_small.cause", "is required"),
        (lambda d: d["defects"]["contamination"].update(effect="  "), "defects.contamination.effect", "is empty"),
        (lambda d: d.update(normal=3), "normal", "must be a string"),
        (lambda d: d["defects"]["broken_large"].update(loction="rim"), "defects.broken_large.loction", "'location'"),
        (lambda d: d.update(defects={}), "defects", "at least one defect"),
        (lambda d: d["defects"].update({"Bad Name": d["defects"]["broken_large"]}), "defects.Bad Name", "snake_case"),
        (lambda d: d.pop("display_name"), "display_name", "is required"),
    ],
)
def test_a_malformed_file_is_refused_naming_the_file_and_the_field(kb_dir: Path, edit, field: str, problem: str):
    path = _broken(kb_dir, edit)
    with pytest.raises(ConfigError) as e:
        load_dir(kb_dir)
    assert str(path) in str(e.value)
    assert f": {field}:" in str(e.value) and problem in str(e.value)


def test_a_file_in_the_wrong_folder_or_with_the_wrong_name_is_refused(kb_dir: Path) -> None:
    (kb_dir / "VisA").mkdir()
    (kb_dir / "MVTec" / "bottle.yaml").rename(kb_dir / "VisA" / "bottle.yaml")
    with pytest.raises(ConfigError, match=r"dataset: 'MVTec' does not match its folder 'VisA'"):
        load_dir(kb_dir)
    (kb_dir / "VisA" / "bottle.yaml").rename(kb_dir / "MVTec" / "jar.yaml")
    with pytest.raises(ConfigError, match=r"jar.yaml: category: 'bottle' does not match"):
        load_dir(kb_dir)


def test_invalid_yaml_and_stray_files_are_named(kb_dir: Path) -> None:
    (kb_dir / "stray.yaml").write_text("dataset: MVTec\n")
    with pytest.raises(ConfigError, match=r"stray.yaml: must be at <root>/<Dataset>/<category>.yaml"):
        load_dir(kb_dir)
    (kb_dir / "stray.yaml").unlink()
    (kb_dir / "MVTec" / "bottle.yaml").write_text("dataset: [MVTec\n")
    with pytest.raises(ConfigError, match=r"bottle.yaml: not valid YAML"):
        load_dir(kb_dir)


def test_mmad_dataset_names_map_to_ours() -> None:
    assert canonical_dataset("DS-MVTec") == canonical_dataset("MVTec-AD") == canonical_dataset("mvtec") == "MVTec"
    assert canonical_dataset("visa") == "VisA" and canonical_dataset("Synthetic") == "Synthetic"
    assert canonical_dataset("MyFactory") == "MyFactory"  # own products keep their dataset name
