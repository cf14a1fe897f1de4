"""The loader reads the real MMAD layout unchanged and names the file and key for every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from mmad_fixtures import SYNTH_PER_CATEGORY, real_layout_entries, write_real_layout

from services.common.errors import InvalidArgument
from services.mmad.loader import MMADDataset, MMADFormatError, load_dataset
from services.mmad.synth import CATEGORIES
from services.mmad.types import QUESTION_TYPES, canonical_type


def test_canonical_type_merges_object_structure_and_details() -> None:
    assert canonical_type("Object Structure") == "Object Analysis"
    assert canonical_type("Object Details") == "Object Analysis"
    assert canonical_type(" anomaly  detection ") == "Anomaly Detection"
    assert canonical_type("Texture Analysis") is None


def test_real_layout_loads_datasets_categories_and_types(real_root: Path) -> None:
    ds = load_dataset(real_root)
    assert [s.image_path for s in ds.samples] == list(real_layout_entries())
    assert ds.categories() == [("DS-MVTec", "bottle"), ("VisA", "candle")]
    broken, good, candle = ds.samples
    assert (broken.dataset, broken.category, broken.is_normal, broken.defect_type) == (
        "DS-MVTec",
        "bottle",
        False,
        "broken_large",
    )
    assert good.is_normal and good.mask_path is None
    assert not candle.is_normal
    oa = broken.questions[2]
    assert (oa.type, oa.raw_type, oa.id) == (
        "Object Analysis",
        "Object Structure",
        "DS-MVTec/bottle/image/broken_large/000.png#2",
    )
    assert good.questions[1].type == "Object Analysis" and good.questions[1].raw_type == "Object Details"
    assert ds.type_counts() == {
        "Anomaly Detection": 3,
        "Defect Classification": 1,
        "Object Analysis": 2,
    }
    assert not ds.unknown_types and not ds.issues


def test_real_layout_masks_resolve_category_relative_and_root_relative(real_root: Path) -> None:
    ds = load_dataset(real_root)
    broken, _, candle = ds.samples
    assert broken.mask_path == "DS-MVTec/bottle/rbg_mask/broken_large/000_rbg_mask.png"
    assert candle.mask_path == "VisA/candle/ground_truth/bad/002.png"
    assert ds.abspath(broken.mask_path).is_file()


def test_templates_keep_their_own_dataset_folder_but_serve_the_query_dataset(real_root: Path) -> None:
    ds = load_dataset(real_root)
    assert ds.templates() == [
        ("DS-MVTec", "bottle", "MVTec-AD/bottle/train/good/001.png"),
        ("DS-MVTec", "bottle", "MVTec-AD/bottle/train/good/026.png"),
        ("DS-MVTec", "bottle", "MVTec-AD/bottle/train/good/100.png"),
        ("VisA", "candle", "VisA/candle/train/good/010.JPG"),
    ]


def test_domain_knowledge_maps_ds_mvtec_to_mvtec(real_root: Path) -> None:
    ds = load_dataset(real_root)
    assert set(ds.knowledge("DS-MVTec", "bottle")) == {"good", "broken_large"}
    assert set(ds.knowledge("VisA", "candle")) == {"good", "bad"}
    assert ds.knowledge("VisA", "nope") == {}


def test_synthetic_dataset_loads_with_every_type_and_category(synth_ds: MMADDataset) -> None:
    assert synth_ds.categories() == [("Synthetic", c) for c in CATEGORIES]
    assert set(synth_ds.type_counts()) == set(QUESTION_TYPES)
    assert not synth_ds.unknown_types and not synth_ds.issues
    counts = synth_ds.counts()
    for cat in CATEGORIES:
        row = counts[("Synthetic", cat)]
        assert row["images"] == SYNTH_PER_CATEGORY
        assert row["normal"] == row["anomalous"] == SYNTH_PER_CATEGORY // 2
    for s in synth_ds.samples:
        assert (s.mask_path is None) == s.is_normal
        for t in s.similar_templates + s.random_templates:
            assert synth_ds.abspath(t).is_file()
    assert set(synth_ds.knowledge("Synthetic", "screw")) == {"good", *CATEGORIES["screw"].defects}


def _error(root: Path, **kw: bool) -> MMADFormatError:
    with pytest.raises(MMADFormatError) as e:
        load_dataset(root, **kw)
    return e.value


def test_missing_image_names_file_key_and_path(real_root: Path) -> None:
    (real_root / "DS-MVTec/bottle/image/good/001.png").unlink()
    err = _error(real_root)
    msg = str(err)
    assert isinstance(err, InvalidArgument) and err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "mmad.json" in msg and '"DS-MVTec/bottle/image/good/001.png"' in msg and "image not found" in msg
    # without the file check the same folder loads
    assert len(load_dataset(real_root, check_files=False).samples) == 3


def test_missing_template_names_the_template_key(real_root: Path) -> None:
    (real_root / "MVTec-AD/bottle/train/good/100.png").unlink()
    msg = str(_error(real_root))
    assert '"DS-MVTec/bottle/image/broken_large/000.png".random_templates[0]' in msg
    assert "MVTec-AD/bottle/train/good/100.png" in msg


def test_missing_mask_names_mask_path_key(real_root: Path) -> None:
    (real_root / "VisA/candle/ground_truth/bad/002.png").unlink()
    assert '"VisA/candle/test/bad/002.JPG".mask_path' in str(_error(real_root))


def test_malformed_json_names_file_and_line(real_root: Path) -> None:
    (real_root / "mmad.json").write_text('{\n  "a": [1, 2,\n}')
    err = _error(real_root)
    assert err.file.endswith("mmad.json") and "line 3" in str(err) and "malformed JSON" in str(err)


def test_malformed_domain_knowledge_names_that_file(real_root: Path) -> None:
    (real_root / "domain_knowledge.json").write_text("{oops")
    assert "domain_knowledge.json" in str(_error(real_root))


def test_missing_mmad_json_says_so(tmp_path: Path) -> None:
    msg = str(_error(tmp_path))
    assert "mmad.json" in msg and "not found" in msg


def test_missing_question_key_names_the_conversation_item(tmp_path: Path) -> None:
    entries = real_layout_entries()
    del entries["DS-MVTec/bottle/image/broken_large/000.png"]["conversation"][1]["Answer"]
    root = write_real_layout(tmp_path / "m", entries)
    msg = str(_error(root))
    assert msg.endswith('"DS-MVTec/bottle/image/broken_large/000.png".conversation[1].Answer: missing')
    assert "KeyError" not in msg


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda e: e.update(conversation="nope"), ".conversation"),
        (lambda e: e.pop("conversation"), ".conversation"),
        (lambda e: e.update(similar_templates="x.png"), ".similar_templates"),
        (lambda e: e["conversation"][0].update(Options=["Yes.", "No."]), ".conversation[0].Options"),
        (lambda e: e.update(mask_path=3), ".mask_path"),
    ],
)
def test_ill_typed_values_name_their_key(tmp_path: Path, mutate, key: str) -> None:  # type: ignore[no-untyped-def]
    entries = real_layout_entries()
    mutate(entries["DS-MVTec/bottle/image/good/001.png"])
    root = write_real_layout(tmp_path / "m", entries)
    assert f'"DS-MVTec/bottle/image/good/001.png"{key}' in str(_error(root))


def test_unknown_type_loads_and_is_reported(tmp_path: Path) -> None:
    entries = real_layout_entries()
    conv = entries["VisA/candle/test/bad/002.JPG"]["conversation"]
    conv.append({"Question": "How shiny?", "Options": {"A": "Very.", "B": "Not."}, "Answer": "A", "type": "Gloss"})
    ds = load_dataset(write_real_layout(tmp_path / "m", entries))
    q = ds.samples[2].questions[1]
    assert (q.type, q.raw_type, q.known_type) == ("Gloss", "Gloss", False)
    assert ds.unknown_types == {"Gloss": 1}
    assert ds.type_counts()["Gloss"] == 1


def test_answer_outside_options_is_a_note_not_a_crash(tmp_path: Path) -> None:
    entries = real_layout_entries()
    entries["VisA/candle/test/bad/002.JPG"]["conversation"][0]["Answer"] = "C"
    ds = load_dataset(write_real_layout(tmp_path / "m", entries))
    assert len(ds.issues) == 1 and "conversation[0].Answer" in ds.issues[0]


def test_non_object_top_level_is_refused(tmp_path: Path) -> None:
    tmp_path.joinpath("mmad.json").write_text(json.dumps([1, 2]))
    assert "top level must be an object" in str(_error(tmp_path))


def test_missing_domain_knowledge_loads_with_a_note(real_root: Path) -> None:
    (real_root / "domain_knowledge.json").unlink()
    ds = load_dataset(real_root)
    assert ds.domain_knowledge == {} and any("domain_knowledge.json" in i for i in ds.issues)
