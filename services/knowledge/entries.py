"""The knowledge schema: one YAML file per product category, loaded by one function.

Layout: `<root>/<Dataset>/<category>.yaml` (see knowledge_base/README.md). Every field
is a required non-empty string and unknown fields are errors, so a typo in a
hand-written file stops start-up with the file and the field named instead of
silently dropping knowledge.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import services
from services.common.errors import ConfigError, InvalidArgument

# The fields of one defect type, in the order they are written and rendered.
DEFECT_FIELDS: tuple[str, ...] = ("signature", "location", "look_alikes", "tolerance", "cause", "effect")
FIELD_LABELS: dict[str, str] = {
    "signature": "Visual signature",
    "location": "Typical location",
    "look_alikes": "Look-alikes",
    "tolerance": "Tolerance",
    "cause": "Likely cause",
    "effect": "Effect",
}
ENTRY_FIELDS: tuple[str, ...] = ("dataset", "category", "display_name", "normal", "defects")

# MMAD names the same dataset differently in its paths and in domain_knowledge.json.
DATASET_ALIASES: dict[str, str] = {
    "mvtec": "MVTec",
    "ds-mvtec": "MVTec",
    "mvtec-ad": "MVTec",
    "mvtec_ad": "MVTec",
    "visa": "VisA",
    "synthetic": "Synthetic",
    "mvtec-loco": "MVTec-LOCO",
    "goodsad": "GoodsAD",
}

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DEFECT_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")


class SchemaError(ValueError):
    """A knowledge entry breaks the schema; `field` is the dotted path of the offending field."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def canonical_dataset(name: str) -> str:
    """`DS-MVTec`, `MVTec-AD`, `mvtec` -> `MVTec`; unknown names are kept as written (own products)."""
    name = name.strip()
    return DATASET_ALIASES.get(name.lower(), name)


def humanize(name: str) -> str:
    """`broken_large` -> `Broken large` (the display name when a source has none)."""
    text = name.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def default_root() -> Path:
    """The knowledge_base/ folder shipped beside the `services` package."""
    return Path(services.__file__).resolve().parent.parent / "knowledge_base"


@dataclass(frozen=True)
class Defect:
    """What an experienced inspector knows about one defect type of one product."""

    name: str
    display_name: str
    signature: str
    location: str
    look_alikes: str
    tolerance: str
    cause: str
    effect: str

    def field(self, name: str) -> str:
        return str(getattr(self, name))


@dataclass(frozen=True)
class Entry:
    """One product category: its normal appearance and every defect type. `version` is set by the store."""

    dataset: str
    category: str
    display_name: str
    normal: str
    defects: tuple[Defect, ...]
    version: int = 0

    @property
    def id(self) -> str:
        return f"{self.dataset}/{self.category}"

    def defect(self, name: str) -> Defect | None:
        return next((d for d in self.defects if d.name == name), None)

    def with_version(self, version: int) -> Entry:
        return dataclasses.replace(self, version=version)

    def same_content(self, other: Entry) -> bool:
        return self.with_version(0) == other.with_version(0)

    def to_dict(self) -> dict[str, Any]:
        """The schema's mapping, in the schema's key order (version is store metadata, not content)."""
        return {
            "dataset": self.dataset,
            "category": self.category,
            "display_name": self.display_name,
            "normal": self.normal,
            "defects": {
                d.name: {"display_name": d.display_name, **{f: d.field(f) for f in DEFECT_FIELDS}} for d in self.defects
            },
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=100)


def _text(data: dict[str, Any], key: str, path: str) -> str:
    if key not in data or data[key] is None:
        raise SchemaError(path, "is required")
    value = data[key]
    if not isinstance(value, str):
        raise SchemaError(path, f"must be a string, got {type(value).__name__}")
    value = " ".join(value.split())  # folded YAML and hand edits leave stray whitespace
    if not value:
        raise SchemaError(path, "is empty")
    return value


def _reject_unknown(data: dict[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(allowed)})"
            raise SchemaError(f"{prefix}{key}", f"unknown field{hint}")


def parse_entry(data: Any) -> Entry:
    """Validate one entry mapping against the schema; raises SchemaError naming the dotted field."""
    if not isinstance(data, dict):
        raise SchemaError("<root>", f"must be a mapping, got {type(data).__name__}")
    _reject_unknown(data, ENTRY_FIELDS, "")
    dataset = canonical_dataset(_text(data, "dataset", "dataset"))
    if not _NAME_RE.match(dataset):
        raise SchemaError("dataset", f"{dataset!r} must be letters, digits, '_', '-' or '.'")
    category = _text(data, "category", "category")
    if not _NAME_RE.match(category):
        raise SchemaError("category", f"{category!r} must be letters, digits, '_', '-' or '.'")
    display_name = _text(data, "display_name", "display_name")
    normal = _text(data, "normal", "normal")
    raw_defects = data.get("defects")
    if not isinstance(raw_defects, dict) or not raw_defects:
        raise SchemaError("defects", "must be a mapping with at least one defect type")
    defects = []
    for name, body in raw_defects.items():
        path = f"defects.{name}"
        if not isinstance(name, str) or not _DEFECT_RE.match(name):
            raise SchemaError(path, "a defect type must be snake_case (lowercase letters, digits, '_')")
        if not isinstance(body, dict):
            raise SchemaError(path, f"must be a mapping, got {type(body).__name__}")
        _reject_unknown(body, ("display_name", *DEFECT_FIELDS), f"{path}.")
        values = {f: _text(body, f, f"{path}.{f}") for f in ("display_name", *DEFECT_FIELDS)}
        defects.append(Defect(name=name, **values))
    return Entry(dataset, category, display_name, normal, tuple(defects))


@dataclass(frozen=True)
class DefectFields:
    """One defect type as a caller sends it (PutEntry): display_name may be empty, texts by DEFECT_FIELDS."""

    name: str
    display_name: str
    texts: dict[str, str]


@dataclass(frozen=True)
class EntryFields:
    """An entry as a caller sends it: defects in the caller's order; empty display names get defaults."""

    dataset: str
    category: str
    display_name: str
    normal: str
    defects: tuple[DefectFields, ...]


def entry_from_fields(fields: EntryFields, existing: Entry | None = None) -> Entry:
    """Validate a caller's entry against the schema; InvalidArgument names the field as the caller sent it.

    A missing display name keeps the stored one (`existing`), or is derived from
    the snake_case name. Schema errors name defects by their position in the
    caller's list (entry.defects[1].cause), not by our mapping key.
    """
    old_names = {d.name: d.display_name for d in existing.defects} if existing else {}
    defects: dict[str, dict[str, str]] = {}
    for i, d in enumerate(fields.defects):
        if not d.name.strip():
            raise InvalidArgument("is empty", field=f"entry.defects[{i}].name")
        if d.name in defects:
            raise InvalidArgument(f"defect type {d.name!r} appears twice", field=f"entry.defects[{i}].name")
        defects[d.name] = {
            "display_name": d.display_name or old_names.get(d.name) or humanize(d.name),
            **{f: d.texts.get(f, "") for f in DEFECT_FIELDS},
        }
    data = {
        "dataset": fields.dataset,
        "category": fields.category,
        "display_name": fields.display_name or (existing.display_name if existing else humanize(fields.category)),
        "normal": fields.normal,
        "defects": defects,
    }
    try:
        return parse_entry(data)
    except SchemaError as e:
        field = e.field
        if field.startswith("defects."):
            name, _, rest = field.removeprefix("defects.").partition(".")
            index = list(defects).index(name) if name in defects else 0
            field = f"defects[{index}]" + (f".{rest}" if rest else "")
        raise InvalidArgument(e.problem, field=f"entry.{field}") from None


def load_file(path: Path) -> Entry:
    """Read and validate one knowledge file; ConfigError names the file and the field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"knowledge file {path}: not valid YAML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"knowledge file {path}: cannot be read: {e}") from None
    try:
        entry = parse_entry(data)
    except SchemaError as e:
        raise ConfigError(f"knowledge file {path}: {e.field}: {e.problem}") from None
    if entry.dataset != path.parent.name:
        raise ConfigError(
            f"knowledge file {path}: dataset: {entry.dataset!r} does not match its folder {path.parent.name!r}"
        )
    if entry.category != path.stem:
        raise ConfigError(f"knowledge file {path}: category: {entry.category!r} does not match its file name")
    return entry


def knowledge_files(root: Path) -> list[Path]:
    """Every `<Dataset>/<category>.yaml` under root, sorted; a YAML file elsewhere is an error (it would be ignored)."""
    files: list[Path] = []
    for path in sorted(root.rglob("*")):
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            continue
        if path.parent.parent != root:
            raise ConfigError(f"knowledge file {path}: must be at <root>/<Dataset>/<category>.yaml (root {root})")
        files.append(path)
    return files


def load_dir(root: Path) -> dict[str, Entry]:
    """Load and validate every knowledge file under root; any bad file fails the whole load."""
    if not root.is_dir():
        raise ConfigError(f"knowledge folder {root} does not exist")
    entries: dict[str, Entry] = {}
    for path in knowledge_files(root):
        entry = load_file(path)
        if entry.id in entries:
            raise ConfigError(f"knowledge file {path}: duplicate entry {entry.id} (.yaml and .yml?)")
        entries[entry.id] = entry
    return entries


def entry_path(root: Path, entry: Entry) -> Path:
    return root / entry.dataset / f"{entry.category}.yaml"


def write_entry(root: Path, entry: Entry) -> Path:
    """Write an entry into a knowledge folder atomically (readers never see half a file)."""
    path = entry_path(root, entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(entry.to_yaml())
    os.replace(tmp, path)
    return path
