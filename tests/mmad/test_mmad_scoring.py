"""Scoring: balanced AD accuracy, macro averages, and both unparseable policies."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.common.answers import read_letter
from services.mmad.loader import MMADDataset
from services.mmad.scoring import Graded, grade, score
from services.mmad.types import ANOMALY_DETECTION, QUESTION_TYPES

ABCD = {"A": "Scratch.", "B": "Crack.", "C": "Hole.", "D": "Contamination."}
YES_NO = {"A": "Yes.", "B": "No."}


def test_perfect_answerer_scores_100_everywhere(synth_ds: MMADDataset) -> None:
    report = score(grade(s, q, q.answer) for s, q in synth_ds.questions())
    for policy in ("wrong", "dropped"):
        ps = report.policy(policy)
        assert ps.headline == 100.0
        assert all(v == 100.0 for per in ps.accuracy.values() for v in per.values())
        assert set(ps.accuracy["Synthetic"]) == set(QUESTION_TYPES)
        assert all(v == 100.0 for per in ps.per_category["Synthetic"].values() for v in per.values())
        assert ps.anomaly_detection["Synthetic"]["miss_rate"] == 0.0
    assert report.unparseable == 0 and report.total == sum(len(s.questions) for s in synth_ds.samples)


def test_seeded_random_answerer_lands_on_chance(synth_ds: MMADDataset) -> None:
    """Each round answers every question uniformly at random; rounds are independent, so tallies are binomial."""
    rng = np.random.default_rng(1234)
    rounds = 60
    graded = []
    for _ in range(rounds):
        for s, q in synth_ds.questions():
            letter = sorted(q.options)[int(rng.integers(len(q.options)))]
            graded.append(grade(s, q, f"The answer is {letter}."))
    report = score(graded)
    z = 3.89  # two-sided 99.99%: a correct scorer fails this about once in 10,000 seeds

    ad = report.counts["Synthetic"][ANOMALY_DETECTION]
    n_normal, n_anom = ad.n_normal, ad.n - ad.n_normal
    # balanced = (p_normal + p_anom) / 2, each a binomial proportion with p = 0.5
    sd_balanced = 0.5 * math.sqrt(0.25 / n_normal + 0.25 / n_anom) * 100
    balanced = report.wrong.accuracy["Synthetic"][ANOMALY_DETECTION]
    assert abs(balanced - 50.0) < z * sd_balanced, (balanced, sd_balanced)
    assert 2 * z * sd_balanced < 8  # the interval is tight enough to mean something

    four = [t for t in QUESTION_TYPES if t != ANOMALY_DETECTION]
    n4 = sum(report.counts["Synthetic"][t].n for t in four)
    c4 = sum(report.counts["Synthetic"][t].correct for t in four)
    sd4 = math.sqrt(0.25 * 0.75 / n4) * 100
    assert abs(100 * c4 / n4 - 25.0) < z * sd4, (100 * c4 / n4, sd4)
    for t in four:  # and each type on its own, with its own (wider) interval
        c = report.counts["Synthetic"][t]
        assert abs(100 * c.correct / c.n - 25.0) < z * math.sqrt(0.25 * 0.75 / c.n) * 100
    assert report.unparseable == 0


# (dataset, type, options, gold, reply, is_normal) -> the expected parse in the comment
TEN = [
    ("DS-MVTec", ANOMALY_DETECTION, YES_NO, "B", "B", True),  # B: right
    ("DS-MVTec", ANOMALY_DETECTION, YES_NO, "B", "A. Yes.", True),  # A: wrong
    ("DS-MVTec", ANOMALY_DETECTION, YES_NO, "A", "Yes, there is.", False),  # A: right
    ("DS-MVTec", ANOMALY_DETECTION, YES_NO, "A", "I am not sure.", False),  # unparseable
    ("DS-MVTec", "Defect Classification", ABCD, "C", "C", False),  # right
    ("DS-MVTec", "Defect Classification", ABCD, "D", "Answer: A", False),  # wrong
    ("DS-MVTec", "Defect Localization", ABCD, "A", "somewhere", False),  # unparseable
    ("VisA", ANOMALY_DETECTION, YES_NO, "B", "No.", True),  # B: right
    ("VisA", ANOMALY_DETECTION, YES_NO, "A", "B", False),  # wrong
    ("VisA", "Defect Classification", ABCD, "B", "It is a crack.", False),  # B: right
]


def _ten() -> list[Graded]:
    return [Graded(ds, "cat", t, gold, read_letter(reply, opts), normal) for ds, t, opts, gold, reply, normal in TEN]


def test_hand_made_ten_questions_unparseable_counted_wrong() -> None:
    r = score(_ten())
    assert (r.total, r.unparseable) == (10, 2)
    w = r.wrong
    # DS-MVTec AD: normal 1/2, anomalous 1/2 -> 50; DC 1/2 -> 50; DL 0/1 -> 0
    assert w.accuracy["DS-MVTec"] == {
        ANOMALY_DETECTION: 50.0,
        "Defect Classification": 50.0,
        "Defect Localization": 0.0,
    }
    # VisA AD: normal 1/1, anomalous 0/1 -> 50; DC 1/1 -> 100
    assert w.accuracy["VisA"] == {ANOMALY_DETECTION: 50.0, "Defect Classification": 100.0}
    assert w.dataset_average["DS-MVTec"] == pytest.approx(100 / 3)
    assert w.dataset_average["VisA"] == 75.0
    assert w.headline == pytest.approx((100 / 3 + 75) / 2)  # 54.1666...
    assert w.type_average == {ANOMALY_DETECTION: 50.0, "Defect Classification": 75.0, "Defect Localization": 0.0}
    assert w.anomaly_detection["DS-MVTec"] == {
        "normal_accuracy": 50.0,
        "anomalous_accuracy": 50.0,
        "balanced_accuracy": 50.0,
        "overkill_rate": 50.0,
        "miss_rate": 50.0,
    }


def test_hand_made_ten_questions_unparseable_dropped() -> None:
    d = score(_ten()).dropped
    # DS-MVTec AD: normal 1/2, anomalous 1/1 -> 75; DC 50; DL has nothing left -> None (not averaged)
    assert d.accuracy["DS-MVTec"] == {
        ANOMALY_DETECTION: 75.0,
        "Defect Classification": 50.0,
        "Defect Localization": None,
    }
    assert d.dataset_average == {"DS-MVTec": 62.5, "VisA": 75.0}
    assert d.headline == 68.75
    assert d.type_average == {ANOMALY_DETECTION: 62.5, "Defect Classification": 75.0, "Defect Localization": None}


def test_averaged_types_can_be_restricted_and_unknown_types_never_average() -> None:
    graded = [
        *_ten(),
        Graded("VisA", "cat", "Gloss", "A", "A", False),  # unknown type: tallied, not averaged
    ]
    r = score(graded, types=[ANOMALY_DETECTION])
    assert r.averaged_types == (ANOMALY_DETECTION,)
    assert r.wrong.accuracy["VisA"]["Gloss"] == 100.0
    assert r.wrong.headline == 50.0  # AD only: 50 and 50
    assert score(graded).wrong.dataset_average["VisA"] == 75.0


def test_per_category_breakdown_and_to_dict() -> None:
    graded = [
        Graded("S", "a", "Defect Classification", "A", "A", False),
        Graded("S", "b", "Defect Classification", "A", "B", False),
    ]
    r = score(graded)
    assert r.wrong.per_category["S"] == {"a": {"Defect Classification": 100.0}, "b": {"Defect Classification": 0.0}}
    assert r.wrong.accuracy["S"]["Defect Classification"] == 50.0
    d = r.to_dict()
    assert d["policies"]["wrong"]["headline"] == 50.0
    assert d["counts"]["S"]["Defect Classification"] == {"n": 2, "correct": 1, "unparseable": 0}
