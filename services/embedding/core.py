"""The embedding stage's logic: a CLIP encoder with a synchronous batch function, and its async service.

`ClipEncoder.embed_items` is the one function both serving modes batch into,
through the Batcher the stage is built with: the asyncio MicroBatcher in embedded
mode, Ray Serve's `@serve.batch` in the cluster. `EmbeddingService` adds what a
request needs around it: limits, preprocessing in a thread pool (or nvjpeg on the
GPU), and dynamic batching.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.common.batching import Batcher, BatcherFactory, MicroBatcher
from services.common.errors import EchoError, FailedPrecondition, InvalidArgument
from services.common.images import ImageLimits, check_header
from services.embedding.config import EmbeddingSettings
from services.embedding.model import LoadedClip, load_clip
from services.embedding.preprocess import preprocess_cpu, preprocess_tensors


@dataclass
class ImageJob:
    """One image for the batch function: encoded bytes, a PIL image, or a preprocessed CHW tensor."""

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
class EmbedResult:
    vectors: np.ndarray  # (n, dim) float32, L2-normalized
    patch_tokens: list[np.ndarray] | None
    compute_ms: float


class ClipEncoder:
    """An open_clip model behind synchronous calls; callers serialize them (one model thread)."""

    def __init__(self, loaded: LoadedClip, limits: ImageLimits = ImageLimits()) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.device = loaded.device
        self.dtype = loaded.dtype
        self.limits = limits
        self.model_id = loaded.model_id
        self.preprocess_cfg = loaded.preprocess_cfg
        size = loaded.preprocess_cfg["size"]
        self.image_size: tuple[int, int] = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.has_patch_tokens = bool(getattr(self.model.visual, "output_tokens", False))
        self.dim = int(self.forward(self.blank_batch(1)).shape[1])  # also warms the model up
        loaded.dim = self.dim

    @classmethod
    def from_settings(cls, settings: EmbeddingSettings) -> ClipEncoder:
        limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels, section="embedding")
        return cls(load_clip(settings), limits)

    def blank_batch(self, n: int) -> Any:
        import torch

        return torch.zeros(n, 3, *self.image_size)

    # --- preprocessing -------------------------------------------------------------------------------
    def preprocess(self, item: Any, field: str = "image") -> Any:
        """One image (encoded bytes or PIL) -> normalized CHW float32 tensor on the CPU."""
        return preprocess_cpu(item, self.loaded.preprocess, self.limits, field)

    def check(self, datas: list[bytes], fields: list[str]) -> None:
        """Refuse empty, oversized or unreadable images from their headers (before the GPU decodes them)."""
        for data, field in zip(datas, fields, strict=True):
            check_header(data, self.limits, field)

    def preprocess_on_device(self, datas: list[bytes], fields: list[str], checked: bool = False) -> list[Any]:
        """Encoded images -> normalized tensors on the model's device (nvjpeg on CUDA); an error for each bad one.

        `checked`: the headers already passed `check` (the service's pipeline), so they are not parsed twice.
        """
        cfg, transform = self.preprocess_cfg, self.loaded.preprocess
        return preprocess_tensors(datas, cfg, self.device, self.limits, transform, fields, checked)

    # --- model calls ---------------------------------------------------------------------------------
    def forward(self, pixels: Any, patch_tokens: bool = False) -> Any:
        """Normalized NCHW pixels -> (n, dim) normalized float32 embeddings, or (embeddings, tokens) if asked."""
        import torch
        import torch.nn.functional as F

        with torch.inference_mode():
            x = pixels.to(self.device, self.dtype, non_blocking=True)
            if self.has_patch_tokens:
                pooled, tokens = self.model.visual(x)
            else:
                pooled, tokens = self.model.encode_image(x), None
            vectors = F.normalize(pooled.float(), dim=-1)
            if not patch_tokens:
                return vectors.cpu()
            if tokens is None:
                raise FailedPrecondition(f"model {self.model_id} gives no patch tokens", field="return_patch_tokens")
            proj = getattr(self.model.visual, "proj", None)
            if proj is not None and tokens.shape[-1] == proj.shape[0]:
                tokens = tokens @ proj  # into the joint embedding space, like the pooled vector
            return vectors.cpu(), F.normalize(tokens.float(), dim=-1).cpu()

    def embed_batch(self, images: list[Any], return_patch_tokens: bool = False) -> Any:
        """The batch function: images (encoded bytes, PIL, or preprocessed CHW tensors) -> (n, dim) float32.

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

    def embed_items(self, jobs: list[ImageJob]) -> list[ImageEmbedding | EchoError]:
        """Per-item batch function for batchers: each job gets its embedding, or the error for its image."""
        import torch

        out: list[Any] = [None] * len(jobs)
        encoded = [i for i, j in enumerate(jobs) if isinstance(j.image, bytes | bytearray)]
        if encoded and self.device.type == "cuda":
            datas, fields = [bytes(jobs[i].image) for i in encoded], [jobs[i].field for i in encoded]
            prepared = self.preprocess_on_device(datas, fields)
            for i, p in zip(encoded, prepared, strict=True):
                out[i] = p
        ok: list[int] = []
        for i, job in enumerate(jobs):
            if out[i] is None:
                try:
                    out[i] = job.image if isinstance(job.image, torch.Tensor) else self.preprocess(job.image, job.field)
                except EchoError as e:
                    out[i] = e
            if not isinstance(out[i], BaseException):
                ok.append(i)
        if not ok:
            return out
        want_tokens = any(jobs[i].patch_tokens for i in ok)
        start = time.perf_counter()
        try:
            res = self.forward(torch.stack([out[i].to(self.device) for i in ok]), patch_tokens=want_tokens)
        except EchoError as e:
            return [e if i in ok else r for i, r in enumerate(out)]
        vectors, tokens = res if want_tokens else (res, None)
        vectors = vectors.numpy()
        ms = (time.perf_counter() - start) * 1000.0
        for j, i in enumerate(ok):
            toks = tokens[j].numpy() if tokens is not None and jobs[i].patch_tokens else None
            out[i] = ImageEmbedding(vectors[j], toks, ms)
        return out

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
    """Async front of a ClipEncoder: validates, preprocesses off the event loop, batches concurrent requests.

    On the CPU, each image is decoded and resized in a thread pool, then batched
    into the model. With GPU decoding, images pass two batchers in a pipeline:
    nvjpeg decode + batched resize (on its own thread and CUDA stream), then the
    model, so the next batch decodes while the current one runs.

    Args:
        decode_on_device: force the tensor (nvjpeg-style) pipeline on or off; default: settings.gpu_decode on CUDA.
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
        cuda = encoder.device.type == "cuda"
        self.decode_on_device = (settings.gpu_decode and cuda) if decode_on_device is None else decode_on_device
        self._pool = ThreadPoolExecutor(settings.preprocess_workers, thread_name_prefix="embedding-pre")
        self.batcher: Batcher = batcher_factory(
            lambda _key, jobs, _abandoned: encoder.embed_items(jobs),
            max_batch_size=settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms,
            stage="embedding",
        )
        self.decoder: Batcher | None = None
        self._stream: Any = None
        if self.decode_on_device:
            import torch

            self._stream = torch.cuda.Stream(device=encoder.device) if cuda else None
            self.decoder = batcher_factory(
                lambda _key, items, _abandoned: self._decode_batch(items),
                max_batch_size=settings.max_batch_size,
                max_wait_ms=settings.max_wait_ms,
                stage="embedding-decode",
            )

    @classmethod
    def from_settings(
        cls, settings: EmbeddingSettings, batcher_factory: BatcherFactory = MicroBatcher
    ) -> EmbeddingService:
        return cls(ClipEncoder.from_settings(settings), settings, batcher_factory=batcher_factory)

    def _decode_batch(self, items: list[tuple[bytes, str]]) -> list[Any]:
        """Decode + resize a batch on the model's device, on a side stream so it overlaps the model's batch."""
        datas, fields = [d for d, _ in items], [f for _, f in items]
        if self._stream is None:
            return self.encoder.preprocess_on_device(datas, fields, checked=True)
        import torch

        with torch.cuda.stream(self._stream):
            out = self.encoder.preprocess_on_device(datas, fields, checked=True)
        self._stream.synchronize()  # the tensors are complete before the model's stream reads them
        return out

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
        loop = asyncio.get_running_loop()
        fields = [f"images[{i}]" for i in range(len(images))]
        if self.decoder is not None:  # headers checked here, pixels decoded a whole batch at a time on the device
            await loop.run_in_executor(self._pool, self.encoder.check, images, fields)
            items: list[Any] = await self.decoder.submit_many(list(zip(images, fields, strict=True)))
        else:
            pre = self.encoder.preprocess
            items = await asyncio.gather(
                *(loop.run_in_executor(self._pool, pre, d, f) for d, f in zip(images, fields, strict=True))
            )
        jobs = [ImageJob(item, return_patch_tokens, f) for item, f in zip(items, fields, strict=True)]
        results = await self.batcher.submit_many(jobs)
        vectors = np.stack([r.vector for r in results]).astype(np.float32, copy=False)
        tokens = [r.patch_tokens for r in results] if return_patch_tokens else None
        return EmbedResult(vectors, tokens, max(r.compute_ms for r in results))

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
        start = time.perf_counter()
        vectors = await self.batcher.run_exclusive(self.encoder.embed_texts, list(texts), self.settings.text_batch_size)
        return EmbedResult(vectors, None, (time.perf_counter() - start) * 1000.0)

    async def close(self) -> None:
        await self.batcher.close()
        if self.decoder is not None:
            await self.decoder.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
