"""The generator: deterministic MMAD-layout output whose answers and masks match what was drawn."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from services.common.errors import InvalidArgument
from services.mmad.loader import MMADDataset
from services.mmad.synth import (
    CATEGORIES,
    DEFECT_LABELS,
    N_RANDOM,
    N_SIMILAR,
    draw_defect,
    image_features,
    plan,
    rank_templates,
    region_of,
    render_item,
    render_normal,
    synthesize,
)
from services.mmad.types import ANOMALY_DETECTION, QUESTION_TYPES


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    kw = {"per_category": 6, "templates_per_category": 3, "progress": False}
    a = _digest(synthesize(tmp_path / "a", seed=7, **kw))
    b = _digest(synthesize(tmp_path / "b", seed=7, **kw))
    c = _digest(synthesize(tmp_path / "c", seed=8, **kw))
    assert a == b
    assert a.keys() == c.keys()
    pngs = [k for k in a if k.endswith(".png") and "/image/" in k]
    assert all(a[k] != c[k] for k in pngs)


def test_an_image_does_not_depend_on_which_other_images_are_generated(tmp_path: Path, synth_root: Path) -> None:
    # fewer categories, fewer queries, same templates: the screw images that exist in both are byte-identical
    small = synthesize(
        tmp_path / "s", seed=0, categories=["screw"], per_category=5, templates_per_category=6, progress=False
    )
    for rel, digest in _digest(small).items():
        if rel.endswith(".png"):
            assert digest == hashlib.sha256((synth_root / rel).read_bytes()).hexdigest(), rel


def test_layout_matches_the_synth_spec(synth_root: Path, synth_ds: MMADDataset) -> None:
    query = re.compile(r"^Synthetic/(\w+)/image/(\w+)/\d{3}\.png$")
    for s in synth_ds.samples:
        m = query.match(s.image_path)
        assert m, s.image_path
        cat, folder = m.groups()
        assert cat in CATEGORIES and (folder == "good" or folder in CATEGORIES[cat].defects)
        if s.mask_path:
            assert s.mask_path == s.image_path.replace("/image/", "/ground_truth/").replace(".png", "_mask.png")
        for t in s.similar_templates + s.random_templates:
            assert re.match(rf"^Synthetic/{cat}/train/good/\d{{3}}\.png$", t)
    knowledge = json.loads((synth_root / "domain_knowledge.json").read_text())
    assert list(knowledge) == ["Synthetic"]
    for cat, spec in CATEGORIES.items():
        entry = knowledge["Synthetic"][cat]
        assert set(entry) == {"good", *spec.defects}
        assert entry["good"].startswith(" <Normal>\n Description: ")
        for d in spec.defects:
            assert entry[d].startswith(f" <{DEFECT_LABELS[d]}>\n Description: ")


def test_every_type_present_options_two_or_four_answer_in_options(synth_ds: MMADDataset) -> None:
    seen = set()
    for _, q in synth_ds.questions():
        seen.add(q.type)
        assert len(q.options) == (2 if q.type == ANOMALY_DETECTION else 4)
        assert list(q.options) == list("ABCD"[: len(q.options)])
        assert q.answer in q.options
        assert len(set(q.options.values())) == len(q.options), q.options
    assert seen == set(QUESTION_TYPES)
    raw = {q.raw_type for _, q in synth_ds.questions()}
    assert {"Object Structure", "Object Details"} <= raw


def test_ad_letter_order_is_randomised_and_normal_images_get_no_defect_questions(synth_ds: MMADDataset) -> None:
    yes_letters = set()
    for s in synth_ds.samples:
        ad = s.questions[0]
        assert ad.type == ANOMALY_DETECTION
        assert ad.options[ad.answer] == ("No." if s.is_normal else "Yes.")
        yes_letters.add(next(k for k, v in ad.options.items() if v == "Yes."))
        types = [q.type for q in s.questions]
        if s.is_normal:
            assert types == [ANOMALY_DETECTION, "Object Classification", "Object Analysis"]
        else:
            assert types == list(QUESTION_TYPES)
    assert yes_letters == {"A", "B"}


def _mask(ds: MMADDataset, rel: str) -> np.ndarray:
    return np.asarray(Image.open(ds.abspath(rel)).convert("L")) > 127


def test_masks_are_non_empty_and_in_the_region_the_answer_names(synth_ds: MMADDataset) -> None:
    for s in synth_ds.samples:
        if s.is_normal:
            continue
        mask = _mask(synth_ds, s.mask_path or "")
        assert mask.sum() >= 12, s.image_path
        ys, xs = np.nonzero(mask)
        dl = next(q for q in s.questions if q.type == "Defect Localization")
        said = re.match(r"At the (.+) of the image\.", dl.options[dl.answer])
        assert said and region_of(float(xs.mean()), float(ys.mean()), mask.shape[0]) == said.group(1), s.image_path


def test_classification_answer_is_the_drawn_defect_type(synth_ds: MMADDataset) -> None:
    for s in synth_ds.samples:
        dc = [q for q in s.questions if q.type == "Defect Classification"]
        if s.is_normal:
            assert not dc
        else:
            assert dc[0].options[dc[0].answer] == f"{DEFECT_LABELS[s.defect_type]}."
        oc = next(q for q in s.questions if q.type == "Object Classification")
        assert oc.options[oc.answer] == CATEGORIES[s.category].product


def test_defects_are_drawn_into_the_pixels_and_only_inside_the_mask() -> None:
    """Regenerate each anomalous query with its undamaged source: every changed pixel is covered by the mask."""
    for item in plan(0, list(CATEGORIES), 24, 2):
        if item.kind != "query" or item.defect == "good":
            continue
        r = render_item(item, 2)
        assert r.mask is not None and r.info is not None
        diff = np.abs(np.asarray(r.image, np.int16) - np.asarray(r.source, np.int16)).max(axis=2)
        assert (diff[~r.mask] > 8).sum() == 0, item.rel_path
        assert diff[r.mask].mean() > 6, item.rel_path  # the defect is visible, not a faint tint
        assert r.info["region"] == region_of(*r.info["centroid"])


def test_normal_queries_are_their_own_source() -> None:
    item = next(i for i in plan(3, ["round_part"], 2, 1) if i.kind == "query" and i.defect == "good")
    r = render_item(item, 1)
    assert r.mask is None and r.info is None and r.image is r.source


def test_similar_templates_are_ranked_by_similarity_to_the_undamaged_source(synth_ds: MMADDataset) -> None:
    templates_of: dict[str, list[str]] = {}
    for _, cat, t in synth_ds.templates():
        templates_of.setdefault(cat, []).append(t)
    items = {i.rel_path: i for i in plan(0, list(CATEGORIES), 12, 6)}
    for s in synth_ds.samples[::5]:
        paths = sorted(templates_of[s.category])
        feats = np.stack([image_features(Image.open(synth_ds.abspath(p))) for p in paths])
        source = render_item(items[s.image_path], 6).source
        ranked = [paths[i] for i in rank_templates(source, feats)]
        assert s.similar_templates == ranked[:N_SIMILAR]
        assert len(s.random_templates) == N_RANDOM == len(set(s.random_templates))


def test_missing_chip_changes_the_chip_count_answer() -> None:
    rng = np.random.default_rng(0)
    for _ in range(40):  # until the missing part drawn is a chip
        img = render_normal("printed_board", rng)
        _, mask, info = draw_defect(img, "printed_board", "missing_part", rng)
        if "chip" in info["appearance"]:
            assert info["facts"]["n_chips"] == "1" and mask.any()
            return
    pytest.fail("no chip was removed in 40 tries")


def test_draw_defect_refuses_bad_input() -> None:
    rng = np.random.default_rng(0)
    img = render_normal("screw", rng)
    with pytest.raises(InvalidArgument, match="defect_type"):
        draw_defect(img, "screw", "misplacement", rng)
    with pytest.raises(InvalidArgument, match="scene"):
        draw_defect(Image.new("RGB", (256, 256)), "screw", "scratch", rng)
    with pytest.raises(InvalidArgument, match="category"):
        render_normal("teapot", rng)
    with pytest.raises(InvalidArgument, match="per_category"):
        synthesize("/nonexistent/never", per_category=0, progress=False)
