"""Builders for MMAD test folders, shared by the tests in this folder (a unique name, unlike conftest)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

SYNTH_PER_CATEGORY = 12  # >= 2 x the most defect types of a category, so every defect type appears
SYNTH_TEMPLATES = 6


def _img(path: Path, color: tuple[int, int, int], mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "JPEG" if path.suffix.upper() == ".JPG" else "PNG"
    Image.new(mode, (16, 16), color if mode == "RGB" else color[0]).save(path, format=fmt)


def real_layout_entries() -> dict[str, Any]:
    """Three entries shaped like MMAD's own: DS-MVTec with MVTec-AD templates, a normal image, a VisA JPG."""
    q = "There is a defect in the object. What is the type of the defect?"
    return {
        "DS-MVTec/bottle/image/broken_large/000.png": {
            "image_path": "DS-MVTec/bottle/image/broken_large/000.png",
            "mask_path": "rbg_mask/broken_large/000_rbg_mask.png",  # category-relative, as in MMAD
            "similar_templates": ["MVTec-AD/bottle/train/good/026.png", "MVTec-AD/bottle/train/good/001.png"],
            "random_templates": ["MVTec-AD/bottle/train/good/100.png"],
            "conversation": [
                {
                    "Question": "Is there any defect in the object?",
                    "Options": {"A": "Yes.", "B": "No."},
                    "Answer": "A",
                    "type": "Anomaly Detection",
                },
                {
                    "Question": q,
                    "Options": {"A": "Contamination.", "B": "Broken.", "C": "Scratch.", "D": "Color."},
                    "Answer": "B",
                    "type": "Defect Classification",
                },
                {
                    "Question": "What is the shape of the bottle's mouth?",
                    "Options": {"A": "Square.", "B": "Round.", "C": "Oval.", "D": "Triangular."},
                    "Answer": "B",
                    "type": "Object Structure",
                },
            ],
        },
        "DS-MVTec/bottle/image/good/001.png": {
            "image_path": "DS-MVTec/bottle/image/good/001.png",
            "mask_path": None,
            "similar_templates": ["MVTec-AD/bottle/train/good/026.png"],
            "random_templates": ["MVTec-AD/bottle/train/good/100.png"],
            "conversation": [
                {
                    "Question": "Is there any defect in the object?",
                    "Options": {"A": "Yes.", "B": "No."},
                    "Answer": "B",
                    "type": "Anomaly Detection",
                },
                {
                    "Question": "What colour is the inside of the bottle?",
                    "Options": {"A": "Black.", "B": "White."},
                    "Answer": "A",
                    "type": "Object Details",
                },
            ],
        },
        "VisA/candle/test/bad/002.JPG": {
            "image_path": "VisA/candle/test/bad/002.JPG",
            "mask_path": "VisA/candle/ground_truth/bad/002.png",  # root-relative also resolves
            "similar_templates": ["VisA/candle/train/good/010.JPG"],
            "random_templates": [],
            "conversation": [
                {
                    "Question": "Is there any defect in the object?",
                    "Options": {"A": "Yes.", "B": "No."},
                    "Answer": "A",
                    "type": "Anomaly Detection",
                }
            ],
        },
    }


def write_real_layout(root: Path, entries: dict[str, Any] | None = None, *, images: bool = True) -> Path:
    """Write mmad.json, domain_knowledge.json and (optionally) every image the entries name."""
    entries = real_layout_entries() if entries is None else entries
    root.mkdir(parents=True, exist_ok=True)
    (root / "mmad.json").write_text(json.dumps(entries, indent=2))
    knowledge = {
        "MVTec": {"bottle": {"good": " <Normal>\n Description: A clear glass bottle.", "broken_large": " <Large"}},
        "VisA": {"candle": {"good": " <Normal>\n Description: Four candles.", "bad": " <Bad>\n Description: x"}},
    }
    (root / "domain_knowledge.json").write_text(json.dumps(knowledge))
    if images:
        for key, e in entries.items():
            _img(root / key, (120, 90, 60))
            for k in ("similar_templates", "random_templates"):
                for t in e.get(k) if isinstance(e.get(k), list) else []:
                    _img(root / t, (100, 100, 100))
        _img(root / "DS-MVTec/bottle/rbg_mask/broken_large/000_rbg_mask.png", (255, 255, 255))
        _img(root / "VisA/candle/ground_truth/bad/002.png", (255, 0, 0), mode="L")
    return root
