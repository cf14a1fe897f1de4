"""Image bytes -> normalized model input, on the CPU (PIL) or as one batch tensor on the GPU (nvjpeg).

The CPU path is open_clip's own eval transform applied to our shared decoder's
output, so it matches what open_clip users get. The tensor path repeats the same
geometry (resize the shortest side, center crop, normalize) with torchvision's
tensor ops, so it runs on the GPU after nvjpeg decoding:

- JPEGs are decoded as one batched nvjpeg call; other formats on the CPU, copied
  to the GPU from pinned (page-locked) memory without blocking;
- images are grouped by size and each group is resized as one batch (image-by-image
  resizing was what held a plain nvjpeg script to 4,677 img/s on an H100, docs/design.md §5),
  in uint8: the full-size pixels are never expanded to float, only the small result;
- the result is normalized and written straight into one NCHW batch in the model's
  dtype (bf16 on CUDA), which is what the model thread receives.
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


MAX_ASPECT = 4  # 'shortest': the long side is cut to this many short sides, centred, before resizing


def resizes_short_side(cfg: dict[str, Any]) -> bool:
    """Whether the preprocessing resizes the short side, then centre-crops (open_clip's 'shortest')."""
    return cfg.get("resize_mode", "shortest") == "shortest"


def preprocess_cpu(
    item: Any, transform: Any, limits: ImageLimits, field: str = "image", *, shortest: bool = True
) -> Any:
    """bytes or PIL image -> normalized CHW float32 tensor, via the shared decoder and open_clip's transform
    (`shortest`: it resizes the short side, so a very elongated image is cut to its centre first, central_band)."""
    img = decode(item, limits, field=field) if isinstance(item, bytes | bytearray | memoryview) else item
    if not isinstance(img, Image.Image):
        raise InvalidArgument(f"must be encoded bytes or a PIL image, got {type(item).__name__}", field=field)
    if shortest and (box := central_band(*img.size)) is not None:
        img = img.crop(box)
    return transform(img if img.mode == "RGB" else img.convert("RGB"))  # convert() copies even an RGB image


def _target_size(cfg: dict[str, Any]) -> tuple[int, int]:
    size = cfg["size"]
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _crop_box(h: int, w: int, cfg: dict[str, Any]) -> tuple[list[int], list[int] | None]:
    """The resize target of an h x w image, and the padding (left, top, right, bottom) after it, if any.

    Mirrors open_clip's eval transform: 'shortest' resizes the short side (the long side truncated, as
    torchvision's Resize(int) does on PIL) then center-crops, 'squash' resizes to the exact size,
    'longest' resizes the long side then pads with fill_color.
    """
    th, tw = _target_size(cfg)
    mode = cfg.get("resize_mode", "shortest")
    if mode == "squash":
        return [th, tw], None
    if mode == "longest":
        scale = min(th / h, tw / w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        pad_l, pad_t = (tw - nw) // 2, (th - nh) // 2
        return [nh, nw], [pad_l, pad_t, tw - nw - pad_l, th - nh - pad_t]
    short, long_ = (h, w) if h <= w else (w, h)
    size = min(th, tw)
    new_long = int(size * long_ / short)
    return ([size, new_long] if h <= w else [new_long, size]), None


def central_band(w: int, h: int) -> tuple[int, int, int, int] | None:
    """The (left, top, right, bottom) centre of a very elongated w x h image, at most MAX_ASPECT short sides long;
    None within the ratio. Resizing its short side first would make the long side huge (a 1 x 30,000 PNG of a few
    hundred bytes became a 224 x 6.7M image, 4.5 GB), while the centre crop keeps only the middle square anyway."""
    keep = MAX_ASPECT * min(w, h)
    if max(w, h) <= keep:
        return None
    left, top = ((w - keep) // 2, 0) if w > h else (0, (h - keep) // 2)
    return left, top, left + min(w, keep), top + min(h, keep)


def resize_crop_uint8(batch: Any, cfg: dict[str, Any]) -> Any:
    """uint8 NCHW (one size) -> uint8 NCHW at the model's input size, on batch's device.

    Resizing uint8 gives uint8 rounded as PIL rounds after resizing, so no full-size float copy is made.
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as tvf

    th, tw = _target_size(cfg)
    interp = InterpolationMode(cfg.get("interpolation", "bicubic"))
    if resizes_short_side(cfg) and (box := central_band(batch.shape[-1], batch.shape[-2])) is not None:
        left, top, right, bottom = box
        batch = batch[..., top:bottom, left:right]
    size, pad = _crop_box(*batch.shape[-2:], cfg)
    x = tvf.resize(batch, size, interpolation=interp, antialias=True)
    if pad is not None:
        return tvf.pad(x, pad, fill=int(cfg.get("fill_color", 0)))
    if cfg.get("resize_mode", "shortest") == "squash":
        return x
    return tvf.center_crop(x, [th, tw])


def normalize_into(out: Any, pixels: Any, cfg: dict[str, Any]) -> None:
    """uint8 NCHW -> (x / 255 - mean) / std, in float32, written into `out` (any float dtype, same device)."""
    import torch

    mean = torch.tensor(cfg["mean"], device=pixels.device, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(cfg["std"], device=pixels.device, dtype=torch.float32).view(1, -1, 1, 1)
    out.copy_(pixels.float().div_(255.0).sub_(mean).div_(std))


def resize_crop_normalize(batch: Any, cfg: dict[str, Any]) -> Any:
    """uint8 NCHW (one size) -> float32 normalized NCHW at the model's input size (resized in uint8 first)."""
    import torch

    small = resize_crop_uint8(batch, cfg)
    out = torch.empty(small.shape, dtype=torch.float32, device=small.device)
    normalize_into(out, small, cfg)
    return out


def decode_tensors(datas: list[bytes], device: Any) -> list[Any]:
    """Encoded images -> uint8 CHW RGB tensors on `device`, or the exception of each one that failed.

    JPEGs go through nvjpeg as one batch on CUDA (image by image if the batch fails, so one corrupt file
    does not fail the rest); other images are decoded on the CPU and copied to the GPU from pinned memory.
    """
    import torch
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    raw = [torch.frombuffer(d, dtype=torch.uint8) for d in datas]  # no copy: the decoders only read
    out: list[Any] = [None] * len(datas)
    cuda = device.type == "cuda"
    jpeg_idx = [i for i, d in enumerate(datas) if d[:3] == JPEG_MAGIC] if cuda else []
    if jpeg_idx:
        try:
            decoded = decode_jpeg([raw[i] for i in jpeg_idx], mode=ImageReadMode.RGB, device=device)
            for i, t in zip(jpeg_idx, decoded, strict=True):
                out[i] = t
        except Exception:  # one bad file fails nvjpeg's whole batch: find it image by image
            for i in jpeg_idx:
                try:
                    out[i] = decode_jpeg(raw[i], mode=ImageReadMode.RGB, device=device)
                except Exception as e:
                    out[i] = e
    for i, t in enumerate(out):
        if t is None:
            try:
                img = decode_image(raw[i], mode=ImageReadMode.RGB)
                out[i] = img.pin_memory().to(device, non_blocking=True) if cuda else img
            except Exception as e:
                out[i] = e
    return out


def prepare_tensor_batch(
    datas: list[bytes],
    cfg: dict[str, Any],
    device: Any,
    limits: ImageLimits,
    transform: Any,
    fields: list[str],
    dtype: Any = None,
    checked: bool = False,
    stage: str = "embedding",
) -> tuple[Any, list[BaseException | None]]:
    """Encoded images -> one normalized NCHW batch on `device` in `dtype` (float32 by default), and each image's
    error (None for the images in the batch, whose rows keep their order).

    An image the tensor decoders cannot read goes through the CPU path alone, which names what is wrong
    with it (or decodes what they could not, e.g. CMYK JPEGs); that fallback is logged and counted
    (`echo_gpu_decode_fallbacks`): a steady rate of it means the GPU decoder is not doing its job.
    `checked`: the caller already ran check_header on every image (skip it here). `stage`: the metric's label.
    """
    import torch

    errors: list[BaseException | None] = [None] * len(datas)
    if not checked:
        for i, d in enumerate(datas):
            try:
                check_header(d, limits, fields[i])
            except EchoError as e:
                errors[i] = e
    todo = [i for i, e in enumerate(errors) if e is None]
    decoded = dict(zip(todo, decode_tensors([datas[i] for i in todo], device), strict=True))
    failed = [i for i, t in decoded.items() if isinstance(t, BaseException)]
    if failed:
        log.warning(
            "tensor decode failed for %d of %d images (%s); decoding them on the CPU",
            len(failed),
            len(todo),
            "; ".join(f"{fields[i]}: {type(decoded[i]).__name__}: {decoded[i]}" for i in failed[:3]),
        )
        DECODE_FALLBACKS.inc(stage=stage)
    rows: dict[int, Any] = {}  # image index -> normalized CHW float32 from the CPU path
    for i in failed:
        try:
            rows[i] = preprocess_cpu(datas[i], transform, limits, fields[i], shortest=resizes_short_side(cfg))
        except EchoError as e:
            errors[i] = e
    good = [i for i, e in enumerate(errors) if e is None]
    row_of = {i: r for r, i in enumerate(good)}
    th, tw = _target_size(cfg)
    out = torch.empty((len(good), 3, th, tw), dtype=dtype or torch.float32, device=device)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i in good:
        if i in rows:
            out[row_of[i]].copy_(rows[i].to(device, non_blocking=True))
        else:
            by_shape.setdefault(tuple(decoded[i].shape), []).append(i)
    for group in by_shape.values():
        for start in range(0, len(group), RESIZE_CHUNK):  # bounds the resize's working memory
            part = group[start : start + RESIZE_CHUNK]
            small = resize_crop_uint8(torch.stack([decoded[i] for i in part]), cfg)
            target = [row_of[i] for i in part]
            if target == list(range(target[0], target[0] + len(target))):
                normalize_into(out[target[0] : target[0] + len(target)], small, cfg)
            else:
                block = torch.empty(small.shape, dtype=out.dtype, device=device)
                normalize_into(block, small, cfg)
                out[target] = block
    return out, errors


def preprocess_tensors(
    datas: list[bytes],
    cfg: dict[str, Any],
    device: Any,
    limits: ImageLimits,
    transform: Any,
    fields: list[str],
    checked: bool = False,
) -> list[Any]:
    """Encoded images -> one normalized CHW float32 tensor each on `device` (or the error for that image)."""
    batch, errors = prepare_tensor_batch(datas, cfg, device, limits, transform, fields, checked=checked)
    rows = iter(batch)
    return [e if e is not None else next(rows) for e in errors]
