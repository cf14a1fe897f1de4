"""Evaluation cells: the request settings one run uses, and the paper's ablation grid.

A cell is a name plus the RequestSettings it sends with every question. "full"
is Echo as configured: the planner's expert map, 1-shot* references, multiple
choice, context-specific knowledge. Each ablation axis changes one thing and is
named as the Echo paper names it:

| axis | the paper's | rows |
| --- | --- | --- |
| baseline | Table 1 | the MLLM under MMAD's 1-shot protocol, Echo |
| knowledge | Table 2 | DK, CSK |
| experts | Table 3 | w/o REr, w/o KG, w/o REx, w/o all, Echo |
| references | Table 4 | 0-shot, 1-shot, 1-shot* |
| format | Fig. 5 | multiple choice, open QA, true/false |
| shots | Fig. 6 | 1-shot*, 2-shot, 3-shot (k most similar) |
| evidence | (ours) | w/o VE, with VE: the visual evidence expert forced off or on for every question |

"1-shot" and the baseline use MMAD's own 1-shot protocol: the dataset's
`random_templates[0]` travels with each request as its reference (reference
mode "template"), not a random pick from the memory. The baseline and "w/o all"
switch the visual evidence expert off too, so they mean the same under the
product protocol (whose map adds it) as under the paper's. Rows that equal the
default (Echo, multiple choice, CSK, 1-shot*) are the same cell, so the grid
runs it once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

REFERENCE_MODES = ("0-shot", "1-shot", "1-shot*", "k-shot", "template")
"""template: MMAD's 1-shot protocol, the dataset's random_templates[0] sent with each request."""
ANSWER_FORMATS = ("mc", "open", "tf")
KNOWLEDGE_MODES = ("none", "dk", "csk")
EXPERTS = ("reference", "knowledge", "reasoning", "evidence")


@dataclass(frozen=True)
class Cell:
    """One evaluation setting.

    Attributes:
        name: directory name of the cell's run (RUN_DIR/<name>/ in a grid).
        experts: expert -> forced on/off; an expert not named keeps the planner's choice.
        reference_mode: 0-shot, 1-shot, 1-shot*, k-shot or template (MMAD's random_templates[0], sent by the
            harness); None: the server's default (1-shot*).
        k_shots: references for k-shot.
        answer_format: mc, open or tf; None: multiple choice.
        knowledge_mode: none, dk or csk; None: the server's default (csk).
    """

    name: str = "full"
    experts: tuple[tuple[str, bool], ...] = ()
    reference_mode: str | None = None
    k_shots: int = 0
    answer_format: str | None = None
    knowledge_mode: str | None = None
    label: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for expert, _ in self.experts:
            if expert not in EXPERTS:
                raise ValueError(f"unknown expert {expert!r}; one of {EXPERTS}")
        if self.reference_mode not in (None, *REFERENCE_MODES):
            raise ValueError(f"reference_mode must be one of {REFERENCE_MODES}, got {self.reference_mode!r}")
        if self.answer_format not in (None, *ANSWER_FORMATS):
            raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {self.answer_format!r}")
        if self.knowledge_mode not in (None, *KNOWLEDGE_MODES):
            raise ValueError(f"knowledge_mode must be one of {KNOWLEDGE_MODES}, got {self.knowledge_mode!r}")

    def settings_key(self) -> tuple[Any, ...]:
        """What the server sees; two cells with the same key give the same answers. Defaults are spelled out."""
        ref = self.reference_mode or "1-shot*"
        return (
            tuple(sorted(self.experts)),
            ref,
            self.k_shots if ref == "k-shot" else 0,
            self.answer_format or "mc",
            self.knowledge_mode or "csk",
        )

    def slug(self) -> str:
        """A folder-safe name from the settings that differ from the default, e.g. "no-reference_tf"; "full"."""
        parts = [f"{'with' if on else 'no'}-{expert}" for expert, on in sorted(self.experts)]
        ref, k, fmt, knowledge = self.settings_key()[1:]
        if ref != "1-shot*":
            parts.append(f"{k or 'k'}-shot" if ref == "k-shot" else ref)
        parts += [f"format-{fmt}"] if fmt != "mc" else []
        parts += [f"knowledge-{knowledge}"] if knowledge != "csk" else []
        return "_".join(parts).replace("*", "star") or "full"

    def describe(self) -> str:
        """One line for reports, e.g. "experts: planner's map, reference off; 1-shot*; mc; csk"."""
        forced = ", ".join(f"{k} {'on' if v else 'off'}" for k, v in self.experts)
        experts = "planner's map" + (f", {forced}" if forced else "")
        ref, k, fmt, knowledge = self.settings_key()[1:]
        ref = f"{k}-shot (k-shot)" if ref == "k-shot" else ref
        ref = "1-shot from MMAD's random_templates[0]" if ref == "template" else ref
        return f"experts: {experts}; references: {ref}; format: {fmt}; knowledge: {knowledge}"

    @property
    def sends_template(self) -> bool:
        """The harness sends the sample's random_templates[0] as the reference (MMAD's 1-shot protocol)."""
        return self.reference_mode == "template"

    def request_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for services.client.build_inspect_request (a template cell adds `references`)."""
        return {
            "experts": dict(self.experts),
            "reference_mode": "1-shot" if self.sends_template else self.reference_mode,
            "k_shots": self.k_shots,
            "answer_format": self.answer_format,
            "knowledge_mode": self.knowledge_mode,
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["experts"] = dict(self.experts)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cell:
        return cls(
            name=d.get("name", "full"),
            experts=tuple(sorted((str(k), bool(v)) for k, v in (d.get("experts") or {}).items())),
            reference_mode=d.get("reference_mode"),
            k_shots=int(d.get("k_shots") or 0),
            answer_format=d.get("answer_format"),
            knowledge_mode=d.get("knowledge_mode"),
            label=d.get("label", ""),
        )


FULL = Cell("full", label="Echo (full)")

_OFF = False
_ALL_OFF = (("evidence", _OFF), ("knowledge", _OFF), ("reasoning", _OFF), ("reference", _OFF))
"""w/o all: the Decision Maker alone, under any protocol (the product's map adds the evidence expert)."""
AXES: dict[str, tuple[str, list[Cell]]] = {
    "baseline": (
        "Table 1: the MLLM under MMAD's 1-shot protocol vs Echo",
        [
            Cell(
                "baseline",
                experts=(("evidence", _OFF), ("knowledge", _OFF), ("reasoning", _OFF), ("reference", True)),
                reference_mode="template",
                label="Baseline (MMAD 1-shot)",
            ),
            Cell("full", label="Echo"),
        ],
    ),
    "knowledge": (
        "Table 2: domain knowledge (DK) vs context-specific knowledge (CSK)",
        [
            Cell("knowledge_dk", knowledge_mode="dk", label="DK"),
            Cell("knowledge_csk", knowledge_mode="csk", label="CSK"),
        ],
    ),
    "experts": (
        "Table 3: expert ablations",
        [
            Cell("wo_rer", experts=(("reference", _OFF),), label="w/o REr"),
            Cell("wo_kg", experts=(("knowledge", _OFF),), label="w/o KG"),
            Cell("wo_rex", experts=(("reasoning", _OFF),), label="w/o REx"),
            Cell("wo_all", experts=_ALL_OFF, label="w/o all"),
            Cell("full", label="Echo"),
        ],
    ),
    "references": (
        "Table 4: reference images (0-shot, 1-shot: MMAD's random template, 1-shot*: the most similar)",
        [
            Cell("shots_0", reference_mode="0-shot", label="0-shot"),
            Cell("shots_1", reference_mode="template", label="1-shot"),
            Cell("shots_1star", reference_mode="1-shot*", label="1-shot*"),
        ],
    ),
    "format": (
        "Fig. 5: answer formats",
        [
            Cell("format_mc", answer_format="mc", label="Multiple choice"),
            Cell("format_open", answer_format="open", label="Open QA"),
            Cell("format_tf", answer_format="tf", label="True/false"),
        ],
    ),
    "shots": (
        "Fig. 6: k-shot (the k most similar normal images)",
        [
            Cell("shots_1star", reference_mode="1-shot*", label="1-shot*"),
            Cell("shots_2", reference_mode="k-shot", k_shots=2, label="2-shot"),
            Cell("shots_3", reference_mode="k-shot", k_shots=3, label="3-shot"),
        ],
    ),
    "evidence": (
        "Visual evidence expert (VE): off and on for every question (ExpertSwitches.evidence)",
        [
            Cell("evidence_off", experts=(("evidence", _OFF),), label="w/o VE"),
            Cell("evidence_on", experts=(("evidence", True),), label="with VE"),
        ],
    ),
}
"""axis -> (title, rows), in the paper's order (then ours: evidence). Row order is the paper's."""


def grid_cells(axes: list[str]) -> tuple[list[Cell], dict[str, list[tuple[str, str]]]]:
    """The distinct cells to run for some axes, and per axis its rows as (row label, cell name).

    Rows whose settings equal an earlier row's share that row's cell (and its run directory); the
    default setting is always named "full".
    """
    unknown = [a for a in axes if a not in AXES]
    if unknown:
        raise ValueError(f"unknown ablation axes {unknown}; choose from {list(AXES)}")
    by_key: dict[tuple[Any, ...], Cell] = {}
    rows: dict[str, list[tuple[str, str]]] = {}
    for axis in axes:
        rows[axis] = []
        for cell in AXES[axis][1]:
            key = cell.settings_key()
            if key not in by_key:
                by_key[key] = FULL if key == FULL.settings_key() else cell
            rows[axis].append((cell.label, by_key[key].name))
    return list(by_key.values()), rows


def parse_experts(spec: str) -> tuple[tuple[str, bool], ...]:
    """'reference=off,knowledge=on' -> (('knowledge', True), ('reference', False)) for the CLI."""
    out: dict[str, bool] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = part.partition("=")
        name = name.strip().lower()
        value = value.strip().lower()
        if name not in EXPERTS or value not in ("on", "off", "true", "false", "1", "0"):
            raise ValueError(f"{part!r}: write EXPERT=on|off with EXPERT one of {EXPERTS}")
        out[name] = value in ("on", "true", "1")
    return tuple(sorted(out.items()))
