"""The answers file: durable appends, resume skips answered ids, a torn last line is cut, two writers are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.common.errors import FailedPrecondition
from services.evaluation.answers import ANSWERS_FILE, AnswerLog, AnswerLogError, read_answers


def _rec(i: int) -> dict:
    return {"id": f"img/{i}.png#0", "answer": "A", "trace": {"text": "ünïcode\nnewline inside"}}


def test_appended_answers_survive_a_reopen_and_duplicates_are_ignored(tmp_path: Path) -> None:
    with AnswerLog.open(tmp_path) as log:
        for i in range(3):
            log.append(_rec(i))
        log.append(_rec(1))  # already answered: ignored
    with AnswerLog.open(tmp_path) as log:
        assert len(log) == 3
        assert "img/2.png#0" in log and "img/9.png#0" not in log
        assert log.duplicates == 0
    lines = (tmp_path / ANSWERS_FILE).read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["id"] for x in lines] == [f"img/{i}.png#0" for i in range(3)]


def test_a_torn_last_line_is_cut_on_resume_and_appends_follow_cleanly(tmp_path: Path) -> None:
    path = tmp_path / ANSWERS_FILE
    good = "".join(json.dumps(_rec(i)) + "\n" for i in range(2))
    path.write_text(good + json.dumps(_rec(2))[:17], encoding="utf-8")  # a kill mid-write
    assert [r["id"] for r in read_answers(path)] == ["img/0.png#0", "img/1.png#0"]
    assert path.read_text(encoding="utf-8").endswith(json.dumps(_rec(2))[:17])  # readers never modify
    with AnswerLog.open(tmp_path) as log:
        assert len(log) == 2
        assert path.read_text(encoding="utf-8") == good
        log.append(_rec(2))
    assert [r["id"] for r in read_answers(path)] == [f"img/{i}.png#0" for i in range(3)]


def test_an_unparseable_final_line_with_its_newline_counts_as_torn(tmp_path: Path) -> None:
    path = tmp_path / ANSWERS_FILE
    path.write_text(json.dumps(_rec(0)) + "\n" + '{"id": "x", "ans\n', encoding="utf-8")
    with AnswerLog.open(tmp_path) as log:
        assert len(log) == 1
    assert path.read_text(encoding="utf-8") == json.dumps(_rec(0)) + "\n"


def test_damage_before_the_last_line_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / ANSWERS_FILE
    path.write_text(json.dumps(_rec(0)) + "\nnot json\n" + json.dumps(_rec(1)) + "\n", encoding="utf-8")
    with pytest.raises(AnswerLogError, match="line 2"):
        AnswerLog.open(tmp_path)


def test_a_second_writer_on_the_same_run_is_refused(tmp_path: Path) -> None:
    with AnswerLog.open(tmp_path), pytest.raises(FailedPrecondition, match="lock"):
        AnswerLog.open(tmp_path)
    with AnswerLog.open(tmp_path) as log:  # released on close
        assert len(log) == 0
