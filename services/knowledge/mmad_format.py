"""MMAD's domain_knowledge.json <-> our entries.

MMAD's format is `{dataset: {category: {key: text}}}`: `good` describes the
normal product, every other key one defect type (VisA has just `bad`). Texts
look like `" <Large Breakage>\\n Description: The rim ..."`.

Import: the `<...>` header becomes the display name, the description becomes
`normal` (for `good`) or the defect's `signature`; lines labelled like our
fields ("Typical location: ...", "Likely cause: ...", also "Location:",
"Cause:", "Effect:", "Look-alikes:", "Tolerance:") fill those fields, and a
field MMAD does not give is set to "unspecified". The category's display name
is derived from its folder name. Export writes the same layout: the signature
as the description, then one labelled line per other field (omitting
"unspecified"), so our own entries survive a round trip.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from services.common.errors import InvalidArgument
from services.knowledge.entries import (
    DEFECT_FIELDS,
    FIELD_LABELS,
    Entry,
    SchemaError,
    canonical_dataset,
    humanize,
    parse_entry,
)

UNSPECIFIED = "unspecified"
NORMAL_KEY = "good"
_HEADER_RE = re.compile(r"^\s*<([^>\n]*)>\s*")
_LABELS: dict[str, str] = {
    "description": "signature",
    "appearance": "signature",
    "visual signature": "signature",
    "signature": "signature",
    "location": "location",
    "typical location": "location",
    "look-alikes": "look_alikes",
    "look alikes": "look_alikes",
    "lookalikes": "look_alikes",
    "tolerance": "tolerance",
    "cause": "cause",
    "likely cause": "cause",
    "effect": "effect",
    "impact": "effect",
}
_LINE_RE = re.compile(r"^\s*([A-Za-z][A-Za-z \-]{1,30}):\s*(.*)$")


def parse_text(text: str) -> tuple[str, dict[str, str]]:
    """Split one MMAD knowledge text into its `<header>` and labelled fields (unlabelled text joins the description)."""
    header = ""
    if m := _HEADER_RE.match(text):
        header, text = m.group(1).strip(), text[m.end() :]
    fields: dict[str, list[str]] = {}
    current = "signature"
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _LINE_RE.match(line)
        if m and m.group(1).strip().lower() in _LABELS:
            current = _LABELS[m.group(1).strip().lower()]
            line = m.group(2)
        fields.setdefault(current, []).append(line.strip())
    return header, {k: " ".join(" ".join(v).split()) for k, v in fields.items() if " ".join(v).strip()}


def _snake(key: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", key.strip().lower()).strip("_") or "defect"


def import_mmad(data: Any, source: str = "domain_knowledge.json") -> list[Entry]:
    """Entries from a parsed domain_knowledge.json; InvalidArgument names the dataset/category/key at fault."""
    if not isinstance(data, dict):
        raise InvalidArgument(f"{source}: the top level must be an object of datasets")
    entries = []
    for dataset, categories in data.items():
        if not isinstance(categories, dict):
            raise InvalidArgument(f"{source}: {dataset}: must be an object of categories")
        for category, keys in categories.items():
            where = f"{source}: {dataset}/{category}"
            if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
                raise InvalidArgument(f"{where}: must be an object of texts")
            normal = UNSPECIFIED
            defects: dict[str, dict[str, str]] = {}
            for key, text in keys.items():
                header, fields = parse_text(text)
                if key == NORMAL_KEY:
                    normal = " ".join(fields.values()) or UNSPECIFIED
                    continue
                name = _snake(key)
                defects[name] = {
                    "display_name": header or humanize(name),
                    **{f: fields.get(f, UNSPECIFIED) for f in DEFECT_FIELDS},
                }
            raw = {
                "dataset": canonical_dataset(dataset),
                "category": category,
                "display_name": humanize(category),
                "normal": normal,
                "defects": defects,
            }
            try:
                entries.append(parse_entry(raw))
            except SchemaError as e:
                raise InvalidArgument(f"{where}: {e}") from None
    return entries


def load_mmad(path: str | Path) -> list[Entry]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InvalidArgument(f"{path}: not a readable JSON file: {e}") from None
    return import_mmad(data, str(path))


def export_mmad(entries: list[Entry]) -> dict[str, dict[str, dict[str, str]]]:
    """domain_knowledge.json's structure for our entries."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for e in sorted(entries, key=lambda x: x.id):
        texts = {NORMAL_KEY: f" <Normal>\n Description: {e.normal}"}
        for d in e.defects:
            lines = [f" <{d.display_name}>", f" Description: {d.signature}"]
            lines += [f" {FIELD_LABELS[f]}: {d.field(f)}" for f in DEFECT_FIELDS[1:] if d.field(f) != UNSPECIFIED]
            texts[d.name] = "\n".join(lines)
        out.setdefault(e.dataset, {})[e.category] = texts
    return out
