"""Read an MMAD-format folder (the real MMAD or our synthetic one) unchanged.

Layout (docs/design.md §2): `<root>/mmad.json` keyed by query image path relative to root
(`<dataset>/<category>/...`), each value holding `mask_path`, `similar_templates`,
`random_templates` and `conversation`; `<root>/domain_knowledge.json` holds
`{dataset: {category: {key: text}}}`. Every error names the file and the key at
fault, so a user with a hand-edited copy of MMAD knows where to look.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.errors import InvalidArgument
from services.mmad.types import QUESTION_TYPES, Question, Sample, canonical_type, knowledge_dataset_key

MMAD_JSON = "mmad.json"
DOMAIN_KNOWLEDGE_JSON = "domain_knowledge.json"


class MMADFormatError(InvalidArgument):
    """The folder is not valid MMAD format; the message names the file and the key."""

    def __init__(self, file: str | Path, key: str, problem: str) -> None:
        self.file = str(file)
        self.key = key
        super().__init__(f"{self.file}: {key}: {problem}" if key else f"{self.file}: {problem}")


@dataclass
class MMADDataset:
    """A loaded MMAD-format folder.

    Attributes:
        root: the folder holding mmad.json; every path in the samples is relative to it.
        samples: one per mmad.json entry, in file order.
        domain_knowledge: the parsed domain_knowledge.json ({} when the folder has none).
        unknown_types: raw question types we do not recognise, with their counts (they still load).
        issues: non-fatal problems found while loading (e.g. a gold answer that is not an option).
    """

    root: Path
    samples: list[Sample]
    domain_knowledge: dict[str, Any]
    unknown_types: Counter[str] = field(default_factory=Counter)
    issues: list[str] = field(default_factory=list)

    def abspath(self, rel: str) -> Path:
        return self.root / rel

    def questions(self) -> Iterator[tuple[Sample, Question]]:
        for sample in self.samples:
            for q in sample.questions:
                yield sample, q

    def templates(self) -> list[tuple[str, str, str]]:
        """Distinct (query dataset, category, template path) over all similar and random templates, sorted.

        The query dataset is the one the template serves (MMAD's DS-MVTec queries use MVTec-AD/... templates).
        """
        seen: set[tuple[str, str, str]] = set()
        for s in self.samples:
            for t in (*s.similar_templates, *s.random_templates):
                seen.add((s.dataset, s.category, t))
        return sorted(seen)

    def categories(self) -> list[tuple[str, str]]:
        """(dataset, category) pairs in first-seen order."""
        return list(dict.fromkeys((s.dataset, s.category) for s in self.samples))

    def knowledge(self, dataset: str, category: str) -> dict[str, str]:
        """Domain-knowledge entries (key -> text) for a query dataset's category; {} when there are none."""
        for key in (dataset, knowledge_dataset_key(dataset)):
            entry = self.domain_knowledge.get(key, {})
            if isinstance(entry, dict) and category in entry:
                return dict(entry[category])
        return {}

    def type_counts(self) -> Counter[str]:
        """Questions per type (canonical, or raw for unknown types)."""
        return Counter(q.type for _, q in self.questions())

    def counts(self) -> dict[tuple[str, str], dict[str, int]]:
        """Per (dataset, category): images, normal images, anomalous images and questions per type."""
        out: dict[tuple[str, str], dict[str, int]] = {}
        for s in self.samples:
            row = out.setdefault(
                (s.dataset, s.category), {"images": 0, "normal": 0, "anomalous": 0, **dict.fromkeys(QUESTION_TYPES, 0)}
            )
            row["images"] += 1
            row["normal" if s.is_normal else "anomalous"] += 1
            for q in s.questions:
                row[q.type] = row.get(q.type, 0) + 1
        return out


def _read_json(path: Path, *, required: bool) -> Any:
    if not path.is_file():
        if required:
            raise MMADFormatError(path, "", "file not found (an MMAD folder holds mmad.json at its root)")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise MMADFormatError(path, f"line {e.lineno} column {e.colno}", f"malformed JSON: {e.msg}") from e
    except UnicodeDecodeError as e:
        raise MMADFormatError(path, "", f"not UTF-8 text: {e}") from e


def is_normal_path(rel: str) -> bool:
    """MMAD's rule: an image is normal when its path contains `good` (as a folder name, here)."""
    return "good" in rel.split("/")[:-1]


def _str_list(value: Any, file: Path, key: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MMADFormatError(file, key, f"must be a list of paths, got {type(value).__name__}")
    return list(value)


def _parse_question(item: Any, file: Path, key: str, image: str, index: int, ds: MMADDataset) -> Question:
    if not isinstance(item, dict):
        raise MMADFormatError(file, key, f"must be an object, got {type(item).__name__}")
    for k in ("Question", "Options", "Answer", "type"):
        if k not in item:
            raise MMADFormatError(file, f"{key}.{k}", "missing")
    text, options, answer, raw_type = item["Question"], item["Options"], item["Answer"], item["type"]
    if not isinstance(text, str):
        raise MMADFormatError(file, f"{key}.Question", f"must be a string, got {type(text).__name__}")
    if not isinstance(options, dict) or not options:
        raise MMADFormatError(file, f"{key}.Options", "must be a non-empty object of letter -> text")
    if not all(isinstance(v, str) for v in options.values()):
        raise MMADFormatError(file, f"{key}.Options", "every option text must be a string")
    if not isinstance(answer, str):
        raise MMADFormatError(file, f"{key}.Answer", f"must be a letter string, got {type(answer).__name__}")
    if not isinstance(raw_type, str):
        raise MMADFormatError(file, f"{key}.type", f"must be a string, got {type(raw_type).__name__}")
    answer = answer.strip()
    if answer not in options:
        ds.issues.append(f"{file}: {key}.Answer: {answer!r} is not one of the options {sorted(options)}")
    qtype = canonical_type(raw_type)
    if qtype is None:
        ds.unknown_types[raw_type] += 1
    return Question(
        id=f"{image}#{index}",
        text=text,
        options={str(k): v for k, v in options.items()},
        answer=answer,
        type=qtype or raw_type,
        raw_type=raw_type,
    )


def _resolve_mask(root: Path, dataset: str, category: str, mask: str) -> str | None:
    """Mask paths are root-relative (ours) or category-relative (MMAD's `rbg_mask/...`); return the one that exists."""
    for rel in (mask, f"{dataset}/{category}/{mask}"):
        if (root / rel).is_file():
            return rel
    return None


def load_dataset(root: str | Path, *, check_files: bool = True) -> MMADDataset:
    """Load `<root>/mmad.json` and `<root>/domain_knowledge.json`.

    Args:
        root: the folder holding mmad.json.
        check_files: also check that every query image, mask and template exists (one stat per distinct path).

    Raises:
        MMADFormatError: naming the file and key: missing file, malformed JSON, a missing or ill-typed key,
            or (with check_files) a missing image. Unknown question types do not raise: they load with their
            raw name and are counted in `unknown_types`.
    """
    root = Path(root)
    if not root.is_dir():
        raise MMADFormatError(root, "", "is not a folder")
    mmad_file = root / MMAD_JSON
    raw = _read_json(mmad_file, required=True)
    if not isinstance(raw, dict):
        got = type(raw).__name__
        raise MMADFormatError(mmad_file, "", f"top level must be an object keyed by image path, got {got}")
    dk_file = root / DOMAIN_KNOWLEDGE_JSON
    knowledge = _read_json(dk_file, required=False)
    ds = MMADDataset(root=root, samples=[], domain_knowledge={})
    if knowledge is None:
        ds.issues.append(f"{dk_file}: not found; knowledge-based experts will have nothing to use")
    elif not isinstance(knowledge, dict) or not all(isinstance(v, dict) for v in knowledge.values()):
        raise MMADFormatError(dk_file, "", "must be an object {dataset: {category: {key: text}}}")
    else:
        ds.domain_knowledge = knowledge

    checked: set[str] = set()

    def check(rel: str, key: str) -> None:
        if rel in checked:
            return
        if not (root / rel).is_file():
            raise MMADFormatError(mmad_file, key, f"image not found: {root / rel}")
        checked.add(rel)

    for image, entry in raw.items():
        key = json.dumps(image)
        parts = image.split("/")
        if len(parts) < 3:
            raise MMADFormatError(mmad_file, key, "key must be an image path <dataset>/<category>/.../<file>")
        if not isinstance(entry, dict):
            raise MMADFormatError(mmad_file, key, f"value must be an object, got {type(entry).__name__}")
        if "conversation" not in entry:
            raise MMADFormatError(mmad_file, f"{key}.conversation", "missing")
        conv = entry["conversation"]
        if not isinstance(conv, list):
            raise MMADFormatError(mmad_file, f"{key}.conversation", f"must be a list, got {type(conv).__name__}")
        dataset, category = parts[0], parts[1]
        similar = _str_list(entry.get("similar_templates"), mmad_file, f"{key}.similar_templates")
        random_ = _str_list(entry.get("random_templates"), mmad_file, f"{key}.random_templates")
        mask = entry.get("mask_path") or None
        if mask is not None and not isinstance(mask, str):
            raise MMADFormatError(mmad_file, f"{key}.mask_path", f"must be a path or null, got {type(mask).__name__}")
        if mask is not None:
            found = _resolve_mask(root, dataset, category, mask)
            if found is None and check_files:
                raise MMADFormatError(mmad_file, f"{key}.mask_path", f"image not found: {root / mask}")
            mask = found or mask
        if check_files:
            check(image, key)
            for i, t in enumerate(similar):
                check(t, f"{key}.similar_templates[{i}]")
            for i, t in enumerate(random_):
                check(t, f"{key}.random_templates[{i}]")
        questions = [
            _parse_question(item, mmad_file, f"{key}.conversation[{i}]", image, i, ds) for i, item in enumerate(conv)
        ]
        ds.samples.append(
            Sample(
                image_path=image,
                dataset=dataset,
                category=category,
                is_normal=is_normal_path(image),
                mask_path=mask,
                similar_templates=similar,
                random_templates=random_,
                questions=questions,
            )
        )
    return ds
