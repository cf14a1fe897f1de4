"""Settings of the embedding stage (open_clip image and text towers, or EfficientNet-Lite0 offline)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from services.common.section import Section


class EmbeddingSettings(Section):
    model: str = Field(
        "echo-tiny-clip",
        description=(
            "open_clip model name, e.g. ViT-B-16, or 'local-dir:DIR' (an open_clip hub-style folder holding "
            "open_clip_config.json and the weights). 'echo-tiny-clip' is the offline random-weight test model."
        ),
    )
    weights: str = Field(
        "random",
        description=(
            "Weights source: an open_clip pretrained tag (e.g. 'openai', read from the local hub cache, never "
            "downloaded), a checkpoint path, or 'random' (random init, seeded; only for offline tests). "
            "Ignored when model is 'local-dir:DIR'."
        ),
    )
    image_encoder: Literal["clip", "auto", "efficientnet-lite0"] = Field(
        "auto",
        description=(
            "What embeds images: auto (the CLIP above wherever its weights exist; EfficientNet-Lite0 when its "
            "weights are 'random', i.e. no CLIP weights are configured); clip (the CLIP above, even with random "
            "weights: offline tests only); efficientnet-lite0 (the pooled ImageNet features of the EfficientNet-Lite0 "
            "weights shipped with Echo-IAD, 1280-d, images only: EmbedTexts is refused, Info says texts=false and "
            "category inference votes on image neighbours). A memory built with one encoder is refused by the "
            "other (its vector size): re-onboard the line's normal images."
        ),
    )
    runtime: Literal["torch", "onnxruntime", "openvino"] = Field(
        "onnxruntime",
        description=(
            "What runs the offline image encoder (EfficientNet-Lite0) on the CPU in fp32: its graph exported once "
            "to ONNX (cached under runtime_cache, checked against torch when loaded) and run by ONNX Runtime (the "
            "default: faster here, docs/results/embedding_runtime.json) or OpenVINO, or torch itself. Vectors agree "
            "within a rounding, so a memory built on one runtime serves the others. A CLIP, CUDA or a half "
            "precision run on torch whatever this says."
        ),
    )
    runtime_cache: str = Field(
        "./echo-data/embedding-runtime",
        description="A local folder for the exported encoder graphs (one file per model id; rebuilt if corrupt).",
    )
    cache_dir: str = Field(
        "", description="Where pretrained tags are looked up: a Hugging Face hub cache folder; empty: the HF default."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present, else CPU.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 on CUDA, fp32 on CPU.")
    max_batch_size: int = Field(32, ge=1, description="Dynamic batching: most images per model call.")
    max_wait_ms: float = Field(
        5.0, ge=0, description="Dynamic batching: longest wait to fill a batch (batch_fill 'time'; Ray Serve's)."
    )
    batch_fill: Literal["idle", "time"] = Field(
        "idle",
        description=(
            "idle: a batch is what is queued when the pipeline can take one (no wait when idle; batches grow with "
            "the load); time: the first image waits up to max_wait_ms for company."
        ),
    )
    pipeline_depth: int = Field(
        2, ge=1, le=8, description="Prepared batches that may wait for the model (back-pressure beyond that)."
    )
    gpu_decode: bool = Field(True, description="On CUDA, decode JPEG with nvjpeg on the GPU; falls back to the CPU.")
    preprocess_workers: int = Field(2, ge=1, description="Threads that decode and resize off the event loop.")
    seed: int = Field(0, description="Seed for the random-weight test model, so every replica agrees.")
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1, description="Larger encoded images are refused.")
    max_image_pixels: int = Field(40_000_000, ge=1, description="Images with more pixels (w*h) are refused.")
    max_images_per_request: int = Field(256, ge=1, description="Most images one EmbedImages request may carry.")
    max_texts_per_request: int = Field(1024, ge=1, description="Most texts one EmbedTexts request may carry.")
    text_batch_size: int = Field(256, ge=1, description="Texts per text-tower call.")
