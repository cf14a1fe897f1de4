"""The defect library: confirmed defects with their box features, idempotent, removable, persistent, and
Defect Classification by the nearest confirmed defects on real features of drawn defects; bad input at the door."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.images import encode_png, sha256_hex
from services.common.values import Box
from services.evidence.bank import BankStore
from services.evidence.core import EvidenceService
from services.evidence.defects import check_type, type_key
from services.evidence.features import TimmPatchFeatures
from services.mmad.synth import draw_defect, render_normal
from tests.evidence.conftest import DATASET, SIZE, small_settings

CATEGORY = "woven_fabric"
TYPES = ("hole", "color_defect")  # two types that look nothing alike on the fabric


def drawn(defect: str, rng: np.random.Generator) -> tuple[bytes, Box]:
    """A fabric image with one defect drawn in, and the defect mask's bounding box (what an operator would draw)."""
    bad, mask, _ = draw_defect(render_normal(CATEGORY, rng, SIZE), CATEGORY, defect, rng)
    ys, xs = np.nonzero(mask)
    return encode_png(bad), Box(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1, 0.0, "", 0.0, True)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("defects")


@pytest.fixture(scope="module")
def service(root: Path, real_features: TimmPatchFeatures) -> EvidenceService:
    """The fabric's bank on line-1 and a library of three confirmed defects of each of TYPES."""
    s = small_settings(root)
    svc = EvidenceService(s, real_features, BankStore(s.bank_store))
    rng = np.random.default_rng(11)
    svc.add_normal_images(
        "line-1", DATASET, CATEGORY, [encode_png(render_normal(CATEGORY, rng, SIZE)) for _ in range(8)]
    )
    for defect in TYPES:
        for _ in range(3):
            image, box = drawn(defect, rng)
            svc.defects.add("line-1", DATASET, CATEGORY, image, defect, box, inspection_id="insp-1")
    return svc


def test_operator_words_and_option_texts_name_the_same_type() -> None:
    assert type_key("Color defect.") == type_key("color_defect") == type_key(" color-defect ") == "color_defect"
    assert type_key("Yes.") == "yes" and type_key("???") == ""
    with pytest.raises(InvalidArgument, match="defect_type"):
        check_type("crack/../x")


def test_an_added_defect_keeps_its_type_box_features_and_inspection(service: EvidenceService) -> None:
    lib = service.defects.store.load(service._key("line-1", DATASET, CATEGORY))
    assert lib is not None and lib.types() == {"color_defect": 3, "hole": 3}
    e = lib.entries[0]
    assert e.inspection_id == "insp-1" and e.box.x1 > e.box.x0
    a, b = e.rows
    assert b > a and lib.patches[a:b].shape[1] == lib.dim > 0  # the box's patch features, in the bank's view
    assert lib.backbone_id == service.bank(lib.key).backbone_id


def test_adding_the_same_image_type_and_box_again_changes_nothing(service: EvidenceService) -> None:
    rng = np.random.default_rng(99)
    image, box = drawn("hole", rng)
    first = service.defects.add("line-1", DATASET, CATEGORY, image, "hole", box)
    again = service.defects.add("line-1", DATASET, CATEGORY, image, "Hole", box)
    assert first.added and not again.added and again.library_size == first.library_size
    assert again.entry.sha256 == sha256_hex(image)
    removed, size = service.defects.remove("line-1", DATASET, CATEGORY, sha256_hex(image))
    assert removed == 1 and size == first.library_size - 1


def test_classify_picks_the_drawn_type_from_the_nearest_confirmed_defects(service: EvidenceService) -> None:
    rng = np.random.default_rng(2024)
    right = 0
    for defect in TYPES:
        for _ in range(3):
            image, _ = drawn(defect, rng)
            res = service.defects.classify_sync(
                "line-1", DATASET, CATEGORY, image, candidates=["Hole.", "Color defect."]
            )
            right += res.classified.defect_type == defect
            assert {v.defect_type for v in res.classified.votes} <= set(TYPES)
            assert abs(sum(v.weight for v in res.classified.votes) - 1.0) < 1e-5
    assert right >= 5, right  # of 6; chance is 3


def test_candidates_limit_the_answer_to_the_question_options(service: EvidenceService) -> None:
    image, _ = drawn("hole", np.random.default_rng(5))
    res = service.defects.classify_sync("line-1", DATASET, CATEGORY, image, candidates=["Color defect.", "Dent."])
    assert res.classified.defect_type == "color_defect"
    with pytest.raises(FailedPrecondition, match="no defect of the types asked"):
        service.defects.classify_sync("line-1", DATASET, CATEGORY, image, candidates=["Dent.", "Burr."])


def test_a_question_of_types_the_library_lacks_is_refused_before_any_backbone_forward(
    service: EvidenceService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forward(*args: object) -> None:
        raise AssertionError("the query's features were extracted for a refusal")

    monkeypatch.setattr(service, "_extract_for", forward)
    image, _ = drawn("hole", np.random.default_rng(6))
    with pytest.raises(FailedPrecondition, match="no defect of the types asked"):
        service.defects.classify_sync("line-1", DATASET, CATEGORY, image, candidates=["Dent.", "Burr."])


def test_the_library_survives_a_restart(root: Path, real_features: TimmPatchFeatures, service: EvidenceService) -> None:
    s = small_settings(root)
    again = EvidenceService(s, real_features, BankStore(s.bank_store))
    image, _ = drawn("color_defect", np.random.default_rng(8))
    res = again.defects.classify_sync("line-1", DATASET, CATEGORY, image)
    before = service.defects.classify_sync("line-1", DATASET, CATEGORY, image)
    assert res.classified.library_size == 6
    assert res.classified.votes == before.classified.votes and res.classified.nearest == before.classified.nearest


def test_an_empty_library_and_an_unknown_product_say_what_to_add(
    service: EvidenceService, tmp_path: Path, real_features: TimmPatchFeatures
) -> None:
    image, box = drawn("hole", np.random.default_rng(3))
    s = small_settings(tmp_path)
    fresh = EvidenceService(s, real_features, BankStore(s.bank_store))
    with pytest.raises(FailedPrecondition, match="add normal images of this product first"):
        fresh.defects.add("line-1", DATASET, CATEGORY, image, "hole", box)
    rng = np.random.default_rng(4)
    fresh.add_normal_images(
        "line-1", DATASET, CATEGORY, [encode_png(render_normal(CATEGORY, rng, SIZE)) for _ in range(3)]
    )
    with pytest.raises(FailedPrecondition, match=r"defect library .* is empty: confirm defects"):
        fresh.defects.classify_sync("line-1", DATASET, CATEGORY, image)
    assert fresh.defects.remove("line-1", DATASET, CATEGORY, sha256_hex(image)) == (0, 0)


def test_bad_type_box_and_k_are_refused_naming_the_field(service: EvidenceService) -> None:
    image, _ = drawn("hole", np.random.default_rng(6))
    with pytest.raises(InvalidArgument, match=r"^defect_type"):
        service.defects.add("line-1", DATASET, CATEGORY, image, "", None)
    with pytest.raises(InvalidArgument, match=r"^box"):
        service.defects.add("line-1", DATASET, CATEGORY, image, "hole", Box(10, 10, SIZE + 5, 20, 0, "", 0, True))
    with pytest.raises(InvalidArgument, match=r"^box"):
        service.defects.classify_sync("line-1", DATASET, CATEGORY, image, Box(30, 10, 20, 20, 0, "", 0, True))
    with pytest.raises(InvalidArgument, match=r"^k"):
        service.defects.classify_sync("line-1", DATASET, CATEGORY, image, k=-1)
    with pytest.raises(InvalidArgument, match=r"^sha256"):
        service.defects.remove("line-1", DATASET, CATEGORY, "not-a-hash")


def test_a_library_in_another_feature_view_is_made_again_from_its_kept_images(
    root: Path, real_features: TimmPatchFeatures, service: EvidenceService
) -> None:
    """A bank that changed its features (a self-configuration's new choice) makes its library's features again."""
    s = small_settings(root)
    svc = EvidenceService(s, real_features, BankStore(s.bank_store))
    key = svc._key("line-1", DATASET, CATEGORY)
    lib = svc.defects.store.load(key)
    assert lib is not None
    before = lib.patches.copy()
    lib.backbone_id = "another-view"
    svc.defects.store.save(lib)
    image, box = drawn("hole", np.random.default_rng(77))
    added = svc.defects.add("line-1", DATASET, CATEGORY, image, "hole", box)  # re-extracts under the write lock
    again = svc.defects.store.load(key)
    assert again is not None and again.backbone_id == svc.bank(key).backbone_id
    assert added.library_size == 7 and np.allclose(again.patches[: before.shape[0]], before, atol=1e-2)
    svc.defects.remove("line-1", DATASET, CATEGORY, sha256_hex(image))


def test_confirmed_defects_set_the_miss_budget_and_none_of_them_passes(service: EvidenceService) -> None:
    bank = service.bank(service._key("line-1", DATASET, CATEGORY))
    assert bank.calibration is not None and bank.calibration.defects == 6
    scores = service.confirmed_defect_scores(bank)
    allowed = int(service.settings.miss_rate * len(scores))
    assert sum(bank.calibration.band(x) == "pass" for x in scores) <= allowed
    assert bank.calibration.review_threshold <= bank.calibration.far_review_threshold
