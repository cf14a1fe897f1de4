"""Protocols: named presets of settings. `paper` is the protocol the Echo paper measured on MMAD.

`paper` keeps the paper's Table 3 expert map exactly (no visual evidence expert); the product default
adds the evidence expert where it was measured (PRODUCT_EXPERT_MAP).

A preset sits between the defaults and a config file: a file's own values, the
environment and explicit overrides still win (services/config.py, load_settings). The
product defaults are what `echo-iad serve` runs; `echo-iad eval` selects
`paper` unless told otherwise (`--protocol product`), and `serve` can select it
with `protocol: paper` in its YAML.

Every value here is cited. MMAD: jam-cc/MMAD
evaluation/examples/Transformers/qwen2_5_vl_query.py (the Qwen-VL query script:
min_pixels 64*28*28, max_pixels 1280*28*28, its prompt, 1-shot from
`random_templates[0]`). The expert map is the paper's ablation table (docs/design.md §1).
"""

from __future__ import annotations

from typing import Any

PROTOCOL_NAMES: tuple[str, ...] = ("product", "paper")

# The paper's map (docs/design.md §1): which experts each question type activates; the decision maker always runs.
PAPER_EXPERT_MAP: dict[str, list[str]] = {
    "Anomaly Detection": ["reference"],
    "Defect Classification": ["reference", "knowledge"],
    "Defect Localization": [],
    "Defect Description": ["reference", "knowledge", "reasoning"],
    "Defect Analysis": ["reference", "reasoning"],
    "Object Classification": [],
    "Object Analysis": [],
}

# The product's map (what `echo-iad serve` runs): the paper's, plus the visual evidence expert (services/evidence)
# where it was measured to help. The one thing measurable here is the evidence's own accuracy, and it is high on
# the two types it answers directly: on the synthetic generator's data the stage's image AUROC is about 0.99 and
# its pixel AUROC about 0.99 (loadtests/bench/evidence_quality.py, tuning seed), so its verdict (Anomaly
# Detection) and its boxes' position words (Defect Localization) carry real signal, where every MLLM runnable
# offline has random weights. Defect Classification gets it too: the product's defect library (operator-confirmed
# defects) answers it by the nearest confirmed defects, above chance on the generator's data (0.44 to 0.59 with 1 to 5
# confirmed per type, against 0.25:
# loadtests/bench/defect_classification.py, docs/results/defect_classification.json). For the other four types
# the evidence only helps through a real MLLM reading it;
# none runs here, so they stay off until one measures them (`echo-iad eval ablate`, the evidence axis). Switch
# per request with settings.experts.evidence.
PRODUCT_EXPERT_MAP: dict[str, list[str]] = {
    **{k: list(v) for k, v in PAPER_EXPERT_MAP.items()},
    "Anomaly Detection": ["reference", "evidence"],
    "Defect Localization": ["evidence"],
    "Defect Classification": ["reference", "knowledge", "evidence"],
}

MMAD_MAX_PIXELS = 1280 * 28 * 28  # about 1.0 MP: 1280 visual tokens per image
MMAD_MIN_PIXELS = 64 * 28 * 28

# The paper's Table 1 reports MVTec-AD (MMAD's DS-MVTec queries) and VisA only.
PAPER_TABLE_DATASETS: tuple[str, ...] = ("DS-MVTec", "VisA")

PRESETS: dict[str, dict[str, Any]] = {
    "product": {},
    "paper": {
        "decision": {
            "prompt_style": "mmad",
            "max_pixels": MMAD_MAX_PIXELS,
            "min_pixels": MMAD_MIN_PIXELS,
            "answer_mode": "constrained",
        },
        "gateway": {"expert_map": PAPER_EXPERT_MAP, "default_reference_mode": "1-shot*"},
        "knowledge": {"default_mode": "csk"},
    },
}


def preset(name: str) -> dict[str, Any]:
    """The settings overlay of a protocol (a deep copy, safe to merge into)."""
    import copy

    if name not in PRESETS:
        raise ValueError(f"protocol: unknown protocol {name!r}; one of {', '.join(PROTOCOL_NAMES)}")
    return copy.deepcopy(PRESETS[name])
