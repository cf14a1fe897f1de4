"""One preprocessing geometry on both paths; oversized and broken images are refused before any work."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from services.common.errors import InvalidArgument
from services.common.images import ImageLimits, check_header
from services.embedding.core import ClipEncoder
from services.embedding.preprocess import preprocess_cpu, preprocess_tensors

# torchvision >= 0.29 deprecates its decoders in favour of TorchCodec; nvjpeg batch decoding still needs them.
pytestmark = [
    pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The given buffer is not writable:UserWarning"),
]


def test_tensor_path_used_for_gpu_decoding_matches_open_clips_pil_transform(
    encoder: ClipEncoder, make_png: Callable[..., bytes], make_jpeg: Callable[..., bytes]
) -> None:
    """The nvjpeg path's resize/crop/normalize, run here on the CPU, gives the PIL path's embeddings."""
    datas = [make_png(1, 120, 90), make_jpeg(2, 64, 200), make_png(3, 64, 64), make_jpeg(4, 300, 120)]
    fields = [f"images[{i}]" for i in range(len(datas))]
    tensors = preprocess_tensors(
        datas, encoder.preprocess_cfg, torch.device("cpu"), encoder.limits, encoder.loaded.preprocess, fields
    )
    for t, d in zip(tensors, datas, strict=True):
        ref = encoder.preprocess(d)
        assert t.shape == ref.shape == (3, *encoder.image_size)
        assert (t - ref).abs().mean() < 0.02  # bicubic kernels differ by a hair between PIL and torch
    cos = (encoder.embed_batch(tensors) * encoder.embed_batch(datas)).sum(axis=1)
    assert cos.min() > 0.999


def test_tensor_path_hands_back_the_error_for_a_bad_image_and_keeps_the_others(
    encoder: ClipEncoder, make_png: Callable[..., bytes]
) -> None:
    datas = [make_png(1), b"\x89PNG\r\n\x1a\n truncated", make_png(2)]
    out = preprocess_tensors(
        datas, encoder.preprocess_cfg, torch.device("cpu"), encoder.limits, encoder.loaded.preprocess, ["a", "b", "c"]
    )
    assert isinstance(out[1], InvalidArgument) and str(out[1]).startswith("b:")
    assert isinstance(out[0], torch.Tensor) and isinstance(out[2], torch.Tensor)


@pytest.mark.parametrize(
    ("data", "limits", "message"),
    [
        (b"", ImageLimits(), "img: is empty"),
        (b"definitely not an image", ImageLimits(), "img: cannot be decoded as an image"),
        (None, ImageLimits(max_bytes=100), "over the limit of 100"),
        (None, ImageLimits(max_pixels=80 * 60 - 1), "80x60 = 4800 pixels, over the limit of 4799"),
    ],
)
def test_bad_images_are_invalid_argument_naming_the_problem(
    data: bytes | None, limits: ImageLimits, message: str, make_png: Callable[..., bytes]
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        check_header(make_png(0, 80, 60) if data is None else data, limits, "img")


def test_cpu_preprocessing_is_open_clips_eval_transform(encoder: ClipEncoder, make_png: Callable[..., bytes]) -> None:
    from io import BytesIO

    from PIL import Image

    data = make_png(7, 100, 50)
    expected = encoder.loaded.preprocess(Image.open(BytesIO(data)).convert("RGB"))
    np.testing.assert_array_equal(encoder.preprocess(data).numpy(), expected.numpy())


def test_cpu_preprocessing_hands_an_rgb_image_to_the_transform_without_copying_it() -> None:
    """A full-size copy per image was half the embedding stage's working memory (the memory drill's --per-stage)."""
    from PIL import Image

    rgb, gray = Image.new("RGB", (64, 48)), Image.new("L", (64, 48))
    assert preprocess_cpu(rgb, lambda img: img, ImageLimits()) is rgb
    assert preprocess_cpu(gray, lambda img: img, ImageLimits()).mode == "RGB"


def test_a_very_elongated_image_is_cut_to_its_centre_before_its_short_side_is_resized() -> None:
    """A 30,000 x 1 PNG is a few hundred bytes; resized by its short side to 224 it was a 6.7-megapixel-long strip
    (4.5 GB), while the centre crop keeps only the middle square."""
    from PIL import Image

    from services.embedding.preprocess import MAX_ASPECT, resize_crop_uint8

    seen: list[tuple[int, int]] = []
    strip = Image.new("RGB", (30_000, 1))
    preprocess_cpu(strip, lambda img: seen.append(img.size), ImageLimits())
    assert seen == [(MAX_ASPECT, 1)]
    tall = Image.new("RGB", (3, 100))
    preprocess_cpu(tall, lambda img: seen.append(img.size), ImageLimits())
    assert seen[-1] == (3, 3 * MAX_ASPECT)
    usual = Image.new("RGB", (400, 100))  # within the ratio: untouched, open_clip's transform sees it whole
    assert preprocess_cpu(usual, lambda img: img, ImageLimits()) is usual
    cfg = {"size": 224, "resize_mode": "shortest", "interpolation": "bicubic"}
    assert resize_crop_uint8(torch.zeros(1, 3, 1, 30_000, dtype=torch.uint8), cfg).shape == (1, 3, 224, 224)
