"""Image bytes -> normalized model input, on the CPU (PIL) or as tensors on the GPU (nvjpeg).

The CPU path is open_clip's own eval transform applied to our shared decoder's
output, so it matches what open_clip users get. The tensor path repeats the same
geometry (resize the shortest side, center crop, normalize) with torchvision's
tensor ops, so it runs on the GPU after nvjpeg decoding; it groups images by
size and resizes each group as one batch (image-by-image resizing was what held
a plain nvjpeg script to 4,677 img/s on an H100, DESIGN §5).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from PIL import Image

from services.common.errors import EchoError, InvalidArgument
from services.common.images import ImageLimits, check_header, decode
from services.common.telemetry import DECODE_FALLBACKS

log = logging.getLogger(__name__)

JPEG_MAGIC = b"\xff\xd8\xff"
RESIZE_CHUNK = 64  # images resized per call: 64 x 3 x 1024 x 1024 float32 is 800 MB

# torchvision >= 0.29 points to TorchCodec, but nvjpeg batch decoding is what we need and still works.
warnings.filterwarnings(
    "ignore", message="The image decoding and encoding capabilities of TorchVision", category=DeprecationWarning
)
# torch.frombuffer warns that `bytes` are read-only; we hand them only to decoders, which read.
warnings.filterwarnings("ignore", message="The given buffer is not writable", category=UserWarning)


def preprocess_cpu(item: Any, transform: Any, limits: ImageLimits, field: str = "image") -> Any:
    """bytes or PIL image -> normalized CHW float32 tensor, via the shared decoder and open_clip's transform."""
    img = decode(item, limits, field=field) if isinstance(item, bytes | bytearray | memoryview) else item
    if not isinstance(img, Image.Image):
        raise InvalidArgument(f"must be encoded bytes or a PIL image, got {type(item).__name__}", field=field)
    return transform(img.convert("RGB"))


def _target_size(cfg: dict[str, Any]) -> tuple[int, int]:
    size = cfg["size"]
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def resize_crop_normalize(batch: Any, cfg: dict[str, Any]) -> Any:
    """uint8 NCHW (one size) -> float32 normalized NCHW at the model's input size, on batch's device.

    Mirrors open_clip's eval transform: 'shortest' resizes the short side then
    center-crops, 'squash' resizes to the exact size, 'longest' resizes the long
    side then pads with fill_color.
    """
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as tvf

    th, tw = _target_size(cfg)
    interp = InterpolationMode(cfg.get("interpolation", "bicubic"))
    mode = cfg.get("resize_mode", "shortest")
    x = batch.float()
    h, w = x.shape[-2:]
    if mode == "squash":
        x = tvf.resize(x, [th, tw], interpolation=interp, antialias=True)
    elif mode == "longest":
        scale = min(th / h, tw / w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        x = tvf.resize(x, [nh, nw], interpolation=interp, antialias=True)
        pad_l, pad_t = (tw - nw) // 2, (th - nh) // 2
        x = tvf.pad(x, [pad_l, pad_t, tw - nw - pad_l, th - nh - pad_t], fill=float(cfg.get("fill_color", 0)))
    else:
        # torchvision's Resize(int) on PIL: the short side becomes `size`, the long side is truncated.
        short, long_ = (h, w) if h <= w else (w, h)
        size = min(th, tw)
        new_long = int(size * long_ / short)
        nh, nw = (size, new_long) if h <= w else (new_long, size)
        x = tvf.resize(x, [nh, nw], interpolation=interp, antialias=True)
        x = tvf.center_crop(x, [th, tw])
    x = x.clamp_(0, 255).round_().div_(255.0)  # PIL rounds to uint8 after resizing; so do we
    mean = torch.tensor(cfg["mean"], device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(cfg["std"], device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - mean) / std


def decode_tensors(datas: list[bytes], device: Any) -> list[Any]:
    """Encoded images -> uint8 CHW RGB tensors on `device`: JPEGs through nvjpeg on CUDA, the rest on the CPU.

    Raises on the first undecodable image; callers fall back image by image.
    """
    import torch
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    raw = [torch.frombuffer(d, dtype=torch.uint8) for d in datas]  # no copy: the decoders only read
    out: list[Any] = [None] * len(datas)
    jpeg_idx = [i for i, d in enumerate(datas) if d[:3] == JPEG_MAGIC] if device.type == "cuda" else []
    if jpeg_idx:
        decoded = decode_jpeg([raw[i] for i in jpeg_idx], mode=ImageReadMode.RGB, device=device)
        for i, t in zip(jpeg_idx, decoded, strict=True):
            out[i] = t
    for i, t in enumerate(out):
        if t is None:
            out[i] = decode_image(raw[i], mode=ImageReadMode.RGB).to(device, non_blocking=True)
    return out


def preprocess_tensors(
    datas: list[bytes],
    cfg: dict[str, Any],
    device: Any,
    limits: ImageLimits,
    transform: Any,
    fields: list[str],
    checked: bool = False,
) -> list[Any]:
    """Encoded images -> one normalized CHW tensor each on `device` (or the error for that image).

    The tensor path (nvjpeg + batched resize) runs first; if it fails, each image
    goes through the CPU path alone, so one bad image fails only its own request.
    That fallback is logged and counted (`echo_gpu_decode_fallbacks`): a steady
    rate of it means the GPU decoder is not doing its job.
    `checked`: the caller already ran check_header on every image (skip it here).
    """
    import torch

    results: list[Any] = [None] * len(datas)
    ok_idx: list[int] = list(range(len(datas))) if checked else []
    for i, d in enumerate([] if checked else datas):
        try:
            check_header(d, limits, fields[i])
            ok_idx.append(i)
        except EchoError as e:
            results[i] = e
    try:
        tensors = decode_tensors([datas[i] for i in ok_idx], device)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for j, t in enumerate(tensors):
            by_shape.setdefault(tuple(t.shape), []).append(j)
        for group in by_shape.values():
            for start in range(0, len(group), RESIZE_CHUNK):  # bounds the float copy of full-size images
                part = group[start : start + RESIZE_CHUNK]
                x = resize_crop_normalize(torch.stack([tensors[j] for j in part]), cfg)
                for j, row in zip(part, x, strict=True):
                    results[ok_idx[j]] = row
    except Exception as e:  # a corrupt image (or no nvjpeg): the CPU path names the culprit
        log.warning(
            "tensor decode of a batch of %d images failed (%s: %s); decoding them on the CPU",
            len(ok_idx),
            type(e).__name__,
            e,
        )
        DECODE_FALLBACKS.inc(stage="embedding")
        for i in ok_idx:
            try:
                results[i] = preprocess_cpu(datas[i], transform, limits, fields[i]).to(device)
            except EchoError as e:
                results[i] = e
    return results
