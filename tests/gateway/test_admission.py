"""Admission past capacity: Little's law over recent inspections decides, at once, who would miss their deadline."""

from __future__ import annotations

import time

import pytest

from services.common.errors import ResourceExhausted
from services.gateway.admission import Admission


def _fill(admission: Admission, latency_s: float, concurrency: float, kind: str = "", n: int = 16) -> None:
    """n inspections of this type that just finished, each taking latency_s with `concurrency` in flight."""
    for _ in range(n):
        admission.in_flight = round(concurrency)
        started = time.perf_counter() - latency_s
        admission.finished((started, round(concurrency), kind, 0), answered=True)
        admission.in_flight += 1
    admission.in_flight = 0


def test_without_enough_history_or_with_nothing_in_flight_every_inspection_is_admitted() -> None:
    a = Admission(max_in_flight=64)
    for _ in range(10):
        a.admit(deadline_s=0.001)  # no history yet: nothing to judge by
    b = Admission(max_in_flight=64)
    _fill(b, latency_s=10.0, concurrency=1.0)
    b.admit(deadline_s=0.001)  # an idle server takes the next one whatever the history says
    assert b.in_flight == 1


def test_a_queue_that_would_outlast_half_the_deadline_is_refused_naming_the_numbers() -> None:
    a = Admission(max_in_flight=64, deadline_share=0.5)
    _fill(a, latency_s=0.2, concurrency=2.0)  # 10 inspections/s
    a.in_flight = 4  # the next would take about 5 / 10 = 0.5 s
    a.admit(deadline_s=2.0)  # 0.5 s <= 1 s: admitted
    a.in_flight = 19  # now about 2 s
    with pytest.raises(ResourceExhausted) as e:
        a.admit(deadline_s=2.0)
    assert "2000 ms of its 2000 ms deadline_ms" in e.value.message
    assert a.in_flight == 19  # a refusal takes no slot


def test_the_hard_cap_refuses_whatever_the_estimate() -> None:
    a = Admission(max_in_flight=2)
    a.admit(60)
    a.admit(60)
    with pytest.raises(ResourceExhausted, match=r"gateway\.max_concurrent"):
        a.admit(60)


def test_answered_inspections_feed_the_estimate_and_failures_do_not() -> None:
    a = Admission(max_in_flight=8, min_samples=1)
    ticket = a.admit(10)
    a.finished(ticket, answered=False)
    assert a.expected_s() is None and a.in_flight == 0
    ticket = a.admit(10)
    a.finished(ticket, answered=True)
    assert a.expected_s() is not None and a.in_flight == 0


def test_an_outage_is_forgotten_once_it_is_older_than_the_horizon() -> None:
    a = Admission(max_in_flight=64, horizon_s=15.0)
    _fill(a, latency_s=25.0, concurrency=2.0)  # a stage was down: answers took 25 s
    a.in_flight = 3
    with pytest.raises(ResourceExhausted):
        a.admit(deadline_s=10.0)
    later = time.perf_counter() + 16.0  # the stage is back and the outage is past the horizon
    assert a.expected_s(now=later) is None  # too few recent answers to judge: admit and learn again
    aged = [s._replace(at=s.at - 16.0) for s in a._recent]  # let 16 s pass for the samples
    a._recent.clear()
    a._recent.extend(aged)
    a.admit(deadline_s=10.0)
    assert a.in_flight == 4


def test_a_slow_question_type_does_not_make_a_fast_one_look_slow() -> None:
    a = Admission(max_in_flight=64, deadline_share=0.5)
    _fill(a, latency_s=8.0, concurrency=4.0, kind="Defect Analysis")  # reasoning: seconds
    _fill(a, latency_s=0.05, concurrency=4.0, kind="Anomaly Detection")  # detection: milliseconds
    a.in_flight = 8
    a.admit(deadline_s=2.0, kind="Anomaly Detection")  # about 9 * 0.05 / 4 = 0.11 s: admitted
    with pytest.raises(ResourceExhausted):
        a.admit(deadline_s=2.0, kind="Defect Analysis")  # about 9 * 8 / 4 = 18 s: refused
    with pytest.raises(ResourceExhausted):  # no history of its own: judged by every recent one (about 10 s)
        a.admit(deadline_s=2.0, kind="Object Classification")
