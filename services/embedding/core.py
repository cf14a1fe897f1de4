"""The embedding stage's logic: a CLIP encoder with synchronous batch steps, and its async service.

`ClipEncoder` has the two steps of an image batch: `prepare_batch` (decode, check,
resize, normalize into one batch on the model's device) and `run_batch` (the model).
`embed_items` runs them one after the other, for synchronous callers. The service
runs them as a pipeline (services/common/pipeline.py): batch N+1 is prepared on one
thread (and, on CUDA, one stream: nvjpeg, uint8 resize, pinned copies) while the
model runs batch N on another, batched by the injected Batcher (the asyncio
MicroBatcher in embedded mode, Ray Serve's `@serve.batch` in the cluster).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.common.batching import BatcherFactory, MicroBatcher
from services.common.devices import DeviceStreams
from services.common.errors import EchoError, FailedPrecondition, InvalidArgument
from services.common.images import ImageLimits
from services.common.pipeline import Pipeline, Prepared
from services.common.runtime import Runner
from services.embedding.config import EmbeddingSettings
from services.embedding.lite import lite_runner, load_lite
from services.embedding.model import LoadedClip, load_clip
from services.embedding.preprocess import prepare_tensor_batch, preprocess_cpu, resizes_short_side
from services.embedding.pretrained import uses_lite


@dataclass
class ImageJob:
    """One image for the batch steps: encoded bytes, a PIL image, or a preprocessed CHW tensor."""

    image: Any
    patch_tokens: bool = False
    field: str = "image"  # names the image in errors, e.g. "images[3]"


@dataclass
class ImageEmbedding:
    """One image's L2-normalized embedding and, when asked, its normalized patch tokens (num_tokens x dim)."""

    vector: np.ndarray
    patch_tokens: np.ndarray | None = None
    compute_ms: float = 0.0  # model time of the batch it rode in


@dataclass
class ImageBatch:
    """A prepared batch: NCHW pixels on the model's device in its dtype, when they are ready, who wants tokens."""

    pixels: Any
    ready: Any = None  # the prepare stream's event on CUDA
    patch_tokens: list[bool] = field(default_factory=list)


@dataclass
class EmbedResult:
    vectors: np.ndarray  # (n, dim) float32, L2-normalized
    patch_tokens: list[np.ndarray] | None
    compute_ms: float
    preprocess_ms: float = 0.0  # decode + resize of the batch(es) the images rode in


class ClipEncoder:
    """An open_clip model behind synchronous calls: callers serialize the preparing (one prepare thread) and the
    model calls (one model thread); the two may overlap."""

    def __init__(
        self,
        loaded: LoadedClip,
        limits: ImageLimits = ImageLimits(),
        gpu_decode: bool = True,
        runner: Runner | None = None,
    ) -> None:
        self.loaded = loaded
        self.runner = runner  # an optimised CPU runtime's pooled-vector graph (embedding.runtime); None: torch
        self.model = loaded.model
        self.device = loaded.device
        self.dtype = loaded.dtype
        self.limits = limits
        self.model_id = loaded.model_id
        self.preprocess_cfg = loaded.preprocess_cfg
        size = loaded.preprocess_cfg["size"]
        self.image_size: tuple[int, int] = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.has_patch_tokens = bool(getattr(self.model.visual, "output_tokens", False))
        self.has_text_tower = loaded.texts
        self.streams = DeviceStreams(self.device)
        self.gpu_decode = gpu_decode and self.device.type == "cuda"  # the tensor path for encoded images
        self.dim = int(self.forward(self.blank_batch(1)).shape[1])  # also warms the model up
        loaded.dim = self.dim

    @classmethod
    def from_settings(cls, settings: EmbeddingSettings) -> ClipEncoder:
        """The configured CLIP (image and text towers, patch tokens), whatever embedding.image_encoder says."""
        limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels, section="embedding")
        return cls(load_clip(settings), limits, settings.gpu_decode)

    @classmethod
    def for_images(cls, settings: EmbeddingSettings) -> ClipEncoder:
        """The stage's image encoder: embedding.image_encoder's choice (CLIP, or EfficientNet-Lite0 offline)."""
        if not uses_lite(settings):
            return cls.from_settings(settings)
        limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels, section="embedding")
        loaded = load_lite(settings)
        return cls(loaded, limits, settings.gpu_decode, lite_runner(settings, loaded))

    def blank_batch(self, n: int) -> Any:
        import torch

        return torch.zeros(n, 3, *self.image_size)

    # --- preprocessing ----------------------------------------------------------------------------------
    def preprocess(self, item: Any, field: str = "image") -> Any:
        """One image (encoded bytes or PIL) -> normalized CHW float32 tensor on the CPU (open_clip's transform)."""
        shortest = resizes_short_side(self.loaded.preprocess_cfg)
        return preprocess_cpu(item, self.loaded.preprocess, self.limits, field, shortest=shortest)

    def prepare_batch(
        self, jobs: list[ImageJob], pool: ThreadPoolExecutor | None = None, tensor_path: bool | None = None
    ) -> Prepared[ImageBatch]:
        """The first step: jobs -> one batch on the model's device (on the prepare stream on CUDA), errors per job.

        Encoded images go through the tensor path (nvjpeg, uint8 resize) when `tensor_path` (default: gpu_decode
        on CUDA), else through open_clip's PIL transform, one image per `pool` thread when a pool is given.
        """
        import torch

        errors: list[BaseException | None] = [None] * len(jobs)
        rows: list[Any] = [None] * len(jobs)
        with self.streams.preparing():
            encoded = [i for i, j in enumerate(jobs) if isinstance(j.image, bytes | bytearray)]
            if encoded and (self.gpu_decode if tensor_path is None else tensor_path):
                datas, fields = [bytes(jobs[i].image) for i in encoded], [jobs[i].field for i in encoded]
                batch, errs = prepare_tensor_batch(
                    datas, self.preprocess_cfg, self.device, self.limits, self.loaded.preprocess, fields, self.dtype
                )
                if len(encoded) == len(jobs):  # the service's case: the batch is the model's input as it is
                    tokens = [j.patch_tokens for j, e in zip(jobs, errs, strict=True) if e is None]
                    return Prepared(ImageBatch(batch, self.streams.ready(), tokens), errs)
                it = iter(batch)
                for i, e in zip(encoded, errs, strict=True):
                    errors[i], rows[i] = (e, None) if e is not None else (None, next(it))
            rest = [i for i in range(len(jobs)) if rows[i] is None and errors[i] is None]
            cpu = [i for i in rest if not isinstance(jobs[i].image, torch.Tensor)]
            run = pool.map if pool is not None and len(cpu) > 1 else map
            for i, out in zip(cpu, run(self._preprocess_job, [jobs[i] for i in cpu]), strict=True):
                errors[i], rows[i] = (out, None) if isinstance(out, BaseException) else (None, out)
            for i in rest:
                if rows[i] is None and errors[i] is None:
                    rows[i] = jobs[i].image  # already a tensor
            good = [i for i in range(len(jobs)) if errors[i] is None]
            pixels = self._stack([rows[i] for i in good])
            ready = self.streams.ready()
        return Prepared(ImageBatch(pixels, ready, [jobs[i].patch_tokens for i in good]), errors)

    def _preprocess_job(self, job: ImageJob) -> Any:
        try:
            return self.preprocess(job.image, job.field)
        except EchoError as e:
            return e

    def _stack(self, rows: list[Any]) -> Any:
        """Rows (CHW, on any device, any float dtype) -> one NCHW batch on the model's device in its dtype."""
        import torch

        if not rows:
            return torch.empty((0, 3, *self.image_size), dtype=self.dtype, device=self.device)
        cuda = self.device.type == "cuda"
        moved = [
            (r.pin_memory() if cuda and r.device.type == "cpu" else r).to(self.device, self.dtype, non_blocking=True)
            for r in rows
        ]
        return torch.stack(moved)

    # --- model calls ---------------------------------------------------------------------------------
    def forward(self, pixels: Any, patch_tokens: bool = False) -> Any:
        """Normalized NCHW pixels -> (n, dim) normalized float32 embeddings, or (embeddings, tokens) if asked."""
        import torch
        import torch.nn.functional as F

        with torch.inference_mode():
            if self.runner is not None and not patch_tokens:  # the CPU runtime: pooled vectors only
                pooled = torch.from_numpy(self.runner(np.ascontiguousarray(pixels.float().cpu().numpy())))
                return F.normalize(pooled.float(), dim=-1)
            x = pixels.to(self.device, self.dtype, non_blocking=True)
            if self.has_patch_tokens:
                pooled, tokens = self.model.visual(x)
            else:
                pooled, tokens = self.model.encode_image(x), None
            vectors = F.normalize(pooled.float(), dim=-1)
            if not patch_tokens:
                return self.streams.to_host(vectors)
            if tokens is None:
                raise FailedPrecondition(f"model {self.model_id} gives no patch tokens", field="return_patch_tokens")
            proj = getattr(self.model.visual, "proj", None)
            if proj is not None and tokens.shape[-1] == proj.shape[0]:
                tokens = tokens @ proj  # into the joint embedding space, like the pooled vector
            return self.streams.to_host(vectors), self.streams.to_host(F.normalize(tokens.float(), dim=-1))

    def run_batch(self, batch: ImageBatch) -> list[ImageEmbedding | EchoError]:
        """The second step: a prepared batch -> one embedding per row (on the model stream on CUDA)."""
        if not len(batch.pixels):
            return []
        want_tokens = any(batch.patch_tokens)
        start = time.perf_counter()
        try:
            with self.streams.running([batch.ready], [batch.pixels]):
                res = self.forward(batch.pixels, patch_tokens=want_tokens)
        except EchoError as e:
            return [e] * len(batch.patch_tokens)
        vectors, tokens = res if want_tokens else (res, None)
        vectors = vectors.numpy()
        ms = (time.perf_counter() - start) * 1000.0
        return [
            ImageEmbedding(vectors[j], tokens[j].numpy() if tokens is not None and want else None, ms)
            for j, want in enumerate(batch.patch_tokens)
        ]

    def embed_batch(self, images: list[Any], return_patch_tokens: bool = False) -> Any:
        """Images (encoded bytes, PIL, or preprocessed CHW tensors) -> (n, dim) float32, synchronously.

        Raises InvalidArgument naming `images[i]` for the first bad image. With
        return_patch_tokens, returns (vectors, tokens (n, num_tokens, dim)).
        """
        jobs = [ImageJob(img, return_patch_tokens, f"images[{i}]") for i, img in enumerate(images)]
        results = self.embed_items(jobs)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        vectors = np.stack([r.vector for r in results]) if results else np.zeros((0, self.dim), np.float32)
        if not return_patch_tokens:
            return vectors
        return vectors, np.stack([r.patch_tokens for r in results])

    def embed_items(self, jobs: list[ImageJob]) -> list[ImageEmbedding | BaseException]:
        """Both steps, one after the other: each job gets its embedding, or the error for its image."""
        prepared = self.prepare_batch(jobs)
        results = iter(self.run_batch(prepared.payload))
        return [e if e is not None else next(results) for e in prepared.errors]

    def embed_texts(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        """Texts -> (n, dim) normalized float32 embeddings from the text tower."""
        import torch
        import torch.nn.functional as F

        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                tokens = self.loaded.tokenizer(texts[start : start + batch_size]).to(self.device)
                chunks.append(F.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu().numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), np.float32)


class EmbeddingService:
    """Async front of a ClipEncoder: validates, then pipelines the images: prepare batch N+1 while the model runs N.

    Args:
        decode_on_device: force the tensor (nvjpeg-style) path for encoded images on or off; default:
            settings.gpu_decode on CUDA.
        batcher_factory: how concurrent images are batched (default: the asyncio MicroBatcher; a Serve
            replica passes `@serve.batch`'s).
    """

    def __init__(
        self,
        encoder: ClipEncoder,
        settings: EmbeddingSettings,
        decode_on_device: bool | None = None,
        batcher_factory: BatcherFactory = MicroBatcher,
    ) -> None:
        self.encoder = encoder
        self.settings = settings
        self.model_id = encoder.model_id
        self.dim = encoder.dim
        self.decode_on_device = encoder.gpu_decode if decode_on_device is None else decode_on_device
        self._pool = ThreadPoolExecutor(settings.preprocess_workers, thread_name_prefix="embedding-pre")
        self.pipeline = Pipeline(
            lambda jobs: encoder.prepare_batch(jobs, self._pool, self.decode_on_device),
            encoder.run_batch,
            batcher_factory=batcher_factory,
            max_batch_size=settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms,
            stage="embedding",
            depth=settings.pipeline_depth,
            fill=settings.batch_fill,
        )

    @classmethod
    def from_settings(
        cls, settings: EmbeddingSettings, batcher_factory: BatcherFactory = MicroBatcher
    ) -> EmbeddingService:
        return cls(ClipEncoder.for_images(settings), settings, batcher_factory=batcher_factory)

    async def embed_images(self, images: list[bytes], return_patch_tokens: bool = False) -> EmbedResult:
        """Encoded images -> normalized embeddings; INVALID_ARGUMENT names the first bad `images[i]`."""
        if not images:
            raise InvalidArgument("is empty: send at least one image", field="images")
        if len(images) > self.settings.max_images_per_request:
            raise InvalidArgument(
                f"has {len(images)} images, over the limit of {self.settings.max_images_per_request} "
                "(embedding.max_images_per_request)",
                field="images",
            )
        if return_patch_tokens and not self.encoder.has_patch_tokens:
            raise FailedPrecondition(f"model {self.model_id} gives no patch tokens", field="return_patch_tokens")
        jobs = [ImageJob(data, return_patch_tokens, f"images[{i}]") for i, data in enumerate(images)]
        done = await self.pipeline.submit_many(jobs)
        vectors = np.stack([d.value.vector for d in done]).astype(np.float32, copy=False)
        tokens = [d.value.patch_tokens for d in done] if return_patch_tokens else None
        return EmbedResult(vectors, tokens, max(d.run_ms for d in done), max(d.prepare_ms for d in done))

    async def embed_texts(self, texts: list[str]) -> EmbedResult:
        """Texts -> normalized text-tower embeddings (on the model thread, between image batches)."""
        if not texts:
            raise InvalidArgument("is empty: send at least one text", field="texts")
        if len(texts) > self.settings.max_texts_per_request:
            raise InvalidArgument(
                f"has {len(texts)} texts, over the limit of {self.settings.max_texts_per_request} "
                "(embedding.max_texts_per_request)",
                field="texts",
            )
        for i, t in enumerate(texts):
            if not t.strip():
                raise InvalidArgument("is empty", field=f"texts[{i}]")
        if not self.encoder.has_text_tower:
            raise FailedPrecondition(
                f"model {self.model_id} embeds images only (no text tower); configure CLIP weights for text embeddings",
                field="texts",
            )
        start = time.perf_counter()
        vectors = await self.pipeline.run_exclusive(
            self.encoder.embed_texts, list(texts), self.settings.text_batch_size
        )
        return EmbedResult(vectors, None, (time.perf_counter() - start) * 1000.0)

    async def close(self) -> None:
        await self.pipeline.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
