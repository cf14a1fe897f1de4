"""Validation at the door: one table of limits, every bad number refused before any stage is called."""

from __future__ import annotations

import asyncio
import io
import math
from pathlib import Path

import pytest
from PIL import Image

from services.common.errors import ConfigError, InvalidArgument
from services.common.images import ImageLimits, ImageStore
from services.config import load_settings
from services.gateway.config import GatewaySettings
from services.gateway.core import Inspector
from services.gateway.domain import Inspection
from services.gateway.limits import door_limits


class _NoStage:
    """Stage clients that fail the test if the Inspector calls any stage."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"a stage was called ({name}) before validation refused the request")


def _png(w: int = 32, h: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (120, 60, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _inspector(tmp_path: Path, **gateway: object) -> Inspector:
    settings = GatewaySettings(**gateway)
    return Inspector(_NoStage(), None, settings, ImageStore(str(tmp_path)), ImageLimits(section="embedding"))  # type: ignore[arg-type]


def _inspection(**kw: object) -> Inspection:
    base: dict[str, object] = {
        "line_id": "line-a",
        "image": _png(),
        "question": "Is there any defect in the object?",
        "options": {"A": "Yes.", "B": "No."},
        "question_type": "Anomaly Detection",
        "category": "screw",
    }
    return Inspection(**{**base, **kw})  # type: ignore[arg-type]


def _refusal(inspector: Inspector, inspection: Inspection) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as e:
        asyncio.run(inspector.inspect(inspection))
    return e.value


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e300, -1.0])
def test_a_deadline_that_is_not_a_finite_number_in_range_is_refused_naming_the_field(tmp_path, value) -> None:  # type: ignore[no-untyped-def]
    err = _refusal(_inspector(tmp_path), _inspection(deadline_ms=value))
    assert err.field == "settings.deadline_ms"
    assert str(err).startswith("settings.deadline_ms")


@pytest.mark.parametrize("k", [-1, 4, 1000])
def test_k_shots_past_the_prompt_is_refused_naming_the_field_and_the_setting(tmp_path, k: int) -> None:  # type: ignore[no-untyped-def]
    err = _refusal(_inspector(tmp_path), _inspection(reference_mode="k-shot", k_shots=k))
    assert err.field == "settings.k_shots"
    assert "gateway.max_prompt_images" in str(err)


def test_a_thousand_caller_references_are_refused_at_the_door_before_any_is_decoded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    err = _refusal(_inspector(tmp_path), _inspection(references=[b"not even an image"] * 1000))
    assert err.field == "references"
    assert "1000" in str(err) and "gateway.max_prompt_images" in str(err)


def test_references_that_fill_the_prompt_with_the_heat_map_are_refused_once_the_plan_is_known(tmp_path) -> None:  # type: ignore[no-untyped-def]
    inspector = _inspector(tmp_path, evidence_as_image=True)
    err = _refusal(inspector, _inspection(references=[_png()] * 3))  # query + 3 + heat map = 5 > 4
    assert err.field == "references" and "heat map" in str(err)


def test_image_limits_are_refused_at_the_door_naming_the_stage_setting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    inspector = Inspector(
        _NoStage(),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        GatewaySettings(),
        ImageStore(str(tmp_path)),
        ImageLimits(max_pixels=100, section="embedding"),
    )
    err = _refusal(inspector, _inspection(image=_png(8, 8), references=[_png(20, 20)]))
    assert err.field == "references[0]" and "embedding.max_image_pixels" in str(err)


def test_every_row_of_the_table_refuses_nan_and_infinity() -> None:
    for bound in door_limits(GatewaySettings()).rows():
        for bad in (math.nan, math.inf):
            with pytest.raises(InvalidArgument) as e:
                bound.check(bad)
            assert e.value.field == bound.field


def test_a_settings_tree_whose_gateway_and_decision_disagree_on_prompt_images_is_refused_at_start() -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(None, gateway={"max_prompt_images": 5})
    assert "decision.max_images" in str(e.value)
    assert load_settings(None, gateway={"max_prompt_images": 6}, decision={"max_images": 6})
