"""MMAD scoring: accuracy per (dataset, type) and the macro averages.

Rules (docs/design.md §2): the letter is read by services/common/answers.py, the parser serving uses;
Anomaly Detection is balanced accuracy, (accuracy on normal + accuracy on anomalous) / 2;
the headline is the unweighted mean over types, then over datasets. An unparseable answer
is counted wrong by our harness and silently dropped by MMAD's reference scripts, so every
report carries both policies side by side.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from statistics import fmean

from services.common.answers import read_letter
from services.mmad.types import ANOMALY_DETECTION, QUESTION_TYPES, Question, Sample

POLICIES: tuple[str, ...] = ("wrong", "dropped")


@dataclass(frozen=True)
class Graded:
    """One answered question. `predicted` is "" when the reply was unparseable."""

    dataset: str
    category: str
    type: str
    gold: str
    predicted: str
    is_normal: bool
    question_id: str = ""

    @property
    def parsed(self) -> bool:
        return self.predicted != ""

    @property
    def correct(self) -> bool:
        return self.predicted == self.gold


@dataclass
class Count:
    """Raw tallies for one cell; AD cells also split by normal / anomalous images."""

    n: int = 0
    correct: int = 0
    unparseable: int = 0
    n_normal: int = 0
    correct_normal: int = 0
    unparseable_normal: int = 0

    def add(self, g: Graded) -> None:
        self.n += 1
        self.correct += g.correct
        self.unparseable += not g.parsed
        if g.is_normal:
            self.n_normal += 1
            self.correct_normal += g.correct
            self.unparseable_normal += not g.parsed

    def accuracy(self, policy: str, balanced: bool) -> float | None:
        """Accuracy in percent under a policy; None when nothing is left to score.

        Balanced: the mean of the per-class accuracies (normal, anomalous) over the classes that have
        something to score, so a cell with only normal images reports their plain accuracy.
        """
        if not balanced:
            denom = self.n - (self.unparseable if policy == "dropped" else 0)
            return 100.0 * self.correct / denom if denom else None
        accs = []
        n_anom, c_anom, u_anom = (
            self.n - self.n_normal,
            self.correct - self.correct_normal,
            self.unparseable - self.unparseable_normal,
        )
        for n, c, u in ((self.n_normal, self.correct_normal, self.unparseable_normal), (n_anom, c_anom, u_anom)):
            denom = n - (u if policy == "dropped" else 0)
            if denom:
                accs.append(c / denom)
        return 100.0 * fmean(accs) if accs else None

    def class_accuracy(self, policy: str) -> tuple[float | None, float | None]:
        """(accuracy on normal images, accuracy on anomalous images), percent."""
        out: list[float | None] = []
        for n, c, u in (
            (self.n_normal, self.correct_normal, self.unparseable_normal),
            (self.n - self.n_normal, self.correct - self.correct_normal, self.unparseable - self.unparseable_normal),
        ):
            denom = n - (u if policy == "dropped" else 0)
            out.append(100.0 * c / denom if denom else None)
        return out[0], out[1]


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return fmean(vals) if vals else None


@dataclass
class PolicyScores:
    """Every figure under one unparseable-answer policy; accuracies are percentages, None where nothing scored.

    Attributes:
        accuracy: dataset -> type -> accuracy (Anomaly Detection balanced).
        dataset_average: dataset -> unweighted mean over the averaged types present.
        type_average: type -> unweighted mean over datasets.
        headline: mean of dataset_average over datasets (the paper's "Average").
        per_category: dataset -> category -> type -> accuracy; per_category_average: dataset -> category -> mean.
        anomaly_detection: dataset -> {normal_accuracy, anomalous_accuracy, balanced_accuracy,
            overkill_rate (normal images called defective), miss_rate (defects called normal)}.
    """

    policy: str
    accuracy: dict[str, dict[str, float | None]] = field(default_factory=dict)
    dataset_average: dict[str, float | None] = field(default_factory=dict)
    type_average: dict[str, float | None] = field(default_factory=dict)
    headline: float | None = None
    per_category: dict[str, dict[str, dict[str, float | None]]] = field(default_factory=dict)
    per_category_average: dict[str, dict[str, float | None]] = field(default_factory=dict)
    anomaly_detection: dict[str, dict[str, float | None]] = field(default_factory=dict)


@dataclass
class ScoreReport:
    """Tallies plus both policies' scores. `averaged_types` are the types that enter the macro averages."""

    counts: dict[str, dict[str, Count]]
    category_counts: dict[str, dict[str, dict[str, Count]]]
    averaged_types: tuple[str, ...]
    wrong: PolicyScores
    dropped: PolicyScores

    @property
    def total(self) -> int:
        return sum(c.n for per in self.counts.values() for c in per.values())

    @property
    def unparseable(self) -> int:
        return sum(c.unparseable for per in self.counts.values() for c in per.values())

    @property
    def headline(self) -> float | None:
        """The harness's headline (unparseable counted wrong)."""
        return self.wrong.headline

    def policy(self, name: str) -> PolicyScores:
        if name not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {name!r}")
        return self.wrong if name == "wrong" else self.dropped

    def to_dict(self) -> dict:
        return {
            "total": self.total,
            "unparseable": self.unparseable,
            "averaged_types": list(self.averaged_types),
            "counts": {
                ds: {t: {"n": c.n, "correct": c.correct, "unparseable": c.unparseable} for t, c in per.items()}
                for ds, per in self.counts.items()
            },
            "policies": {p: asdict(self.policy(p)) for p in POLICIES},
        }


def _ordered_types(types: Iterable[str]) -> list[str]:
    present = set(types)
    return [t for t in QUESTION_TYPES if t in present] + sorted(present - set(QUESTION_TYPES))


def _policy_scores(
    policy: str,
    counts: dict[str, dict[str, Count]],
    category_counts: dict[str, dict[str, dict[str, Count]]],
    averaged: Sequence[str],
) -> PolicyScores:
    ps = PolicyScores(policy=policy)
    for ds, per in counts.items():
        ps.accuracy[ds] = {t: per[t].accuracy(policy, t == ANOMALY_DETECTION) for t in _ordered_types(per)}
        ps.dataset_average[ds] = _mean(ps.accuracy[ds].get(t) for t in averaged)
        if ANOMALY_DETECTION in per:
            c = per[ANOMALY_DETECTION]
            normal, anomalous = c.class_accuracy(policy)
            ps.anomaly_detection[ds] = {
                "normal_accuracy": normal,
                "anomalous_accuracy": anomalous,
                "balanced_accuracy": c.accuracy(policy, True),
                "overkill_rate": None if normal is None else 100.0 - normal,
                "miss_rate": None if anomalous is None else 100.0 - anomalous,
            }
        ps.per_category[ds] = {}
        ps.per_category_average[ds] = {}
        for cat, cper in category_counts[ds].items():
            accs = {t: cper[t].accuracy(policy, t == ANOMALY_DETECTION) for t in _ordered_types(cper)}
            ps.per_category[ds][cat] = accs
            ps.per_category_average[ds][cat] = _mean(accs.get(t) for t in averaged)
    all_types = _ordered_types(t for per in counts.values() for t in per)
    ps.type_average = {t: _mean(ps.accuracy[ds].get(t) for ds in counts) for t in all_types}
    ps.headline = _mean(ps.dataset_average.values())
    return ps


def score(graded: Iterable[Graded], *, types: Sequence[str] | None = None) -> ScoreReport:
    """Score answered questions.

    Args:
        graded: one Graded per question.
        types: the types that enter the macro averages (default: every canonical MMAD type present; the Echo
            paper's table leaves out the two Object types). Unknown types are tallied but never averaged.
    """
    counts: dict[str, dict[str, Count]] = defaultdict(lambda: defaultdict(Count))
    category_counts: dict[str, dict[str, dict[str, Count]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(Count))
    )
    for g in graded:
        counts[g.dataset][g.type].add(g)
        category_counts[g.dataset][g.category][g.type].add(g)
    present = {t for per in counts.values() for t in per}
    averaged = tuple(t for t in (types or QUESTION_TYPES) if t in QUESTION_TYPES and t in present)
    plain_counts = {ds: dict(per) for ds, per in counts.items()}
    plain_cat = {ds: {c: dict(p) for c, p in per.items()} for ds, per in category_counts.items()}
    return ScoreReport(
        counts=plain_counts,
        category_counts=plain_cat,
        averaged_types=averaged,
        wrong=_policy_scores("wrong", plain_counts, plain_cat, averaged),
        dropped=_policy_scores("dropped", plain_counts, plain_cat, averaged),
    )


def grade(sample: Sample, question: Question, reply: str, *, free: bool = False) -> Graded:
    """Read a reply to one question as serving reads it and pair it with the gold answer.

    Args:
        free: the reply was generated without a constraint (decision.answer_mode free).
    """
    return Graded(
        dataset=sample.dataset,
        category=sample.category,
        type=question.type,
        gold=question.answer,
        predicted=read_letter(reply, question.options, free=free),
        is_normal=sample.is_normal,
        question_id=question.id,
    )
