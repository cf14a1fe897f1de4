"""One resize to the pixel budget, identical to Qwen2-VL's rule, so the processor never resizes again."""

from __future__ import annotations

import random

import pytest
from PIL import Image
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

from services.common.errors import InvalidArgument
from services.decision.preprocess import fit_pixels, fit_size, image_tokens, prepare_images


def test_fit_size_matches_qwen2_vl_smart_resize() -> None:
    rng = random.Random(0)
    for _ in range(500):
        h, w = rng.randint(28, 3000), rng.randint(28, 3000)
        if max(h, w) / min(h, w) > 200:
            continue
        lo = rng.choice([28 * 28, 56 * 56, 128 * 28 * 28])
        hi = rng.choice([224 * 224, 448 * 448, 1280 * 28 * 28])
        assert fit_size(h, w, lo, hi) == tuple(smart_resize(h, w, 28, lo, hi)), (h, w, lo, hi)


def test_fitted_images_respect_the_budget_and_keep_the_aspect() -> None:
    img = fit_pixels(Image.new("RGB", (1600, 900)), 56 * 56, 448 * 448)
    assert img.width % 28 == 0 and img.height % 28 == 0
    assert img.width * img.height <= 448 * 448
    assert abs(img.width - img.height * 16 / 9) <= 2 * 28  # aspect kept up to the 28-pixel grid
    small = fit_pixels(Image.new("RGB", (20, 20)), 56 * 56, 448 * 448)
    assert small.size == (56, 56)
    assert image_tokens(small) == 4
    assert fit_pixels(img, 56 * 56, 448 * 448) is img  # idempotent: nothing downstream resizes again


def test_the_processor_leaves_fitted_images_alone(local_model) -> None:
    for size in [(56, 56), (300, 200), (1000, 120)]:
        img = fit_pixels(Image.new("RGB", size, (9, 9, 9)), 56 * 56, 448 * 448)
        grid = local_model.processor.image_processor(images=[img], return_tensors="pt")["image_grid_thw"][0].tolist()
        assert (grid[1] * 14, grid[2] * 14) == (img.height, img.width)


def test_bad_images_are_refused_naming_the_field(png) -> None:
    with pytest.raises(InvalidArgument, match=r"reference_images\[1\]: cannot be decoded"):
        prepare_images(
            [("query_image", png(0)), ("reference_images[0]", png(1)), ("reference_images[1]", b"xx")],
            56 * 56,
            448 * 448,
        )
    import io

    buf = io.BytesIO()
    Image.new("RGB", (1000, 2)).save(buf, format="PNG")
    with pytest.raises(InvalidArgument, match=r"query_image: aspect ratio"):
        prepare_images([("query_image", buf.getvalue())], 56 * 56, 448 * 448)
