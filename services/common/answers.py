"""Reading an answer out of a model's reply: the one parser, for serving and for scoring.

Multiple choice follows MMAD (docs/design.md §2): the first `\\b([A-E])\\b` in the reply that is
one of the options (any option letter, when a question has more than five); failing that,
the one option whose text the reply states. A reply generated without a constraint
("free" answers) is read by MMAD's own reference rule instead: the last A-E, then the
option text closest by difflib. Open QA maps a free answer to the closest option text by
word overlap. Anything ambiguous or empty yields "" (unparsed), which our harness counts
as wrong. The decision stage reads its replies with `read_letter`; evaluation scores the
letter the stage served and re-parses nothing, and a reply scored offline
(services/mmad/scoring.grade) goes through the same `read_letter`.
"""

from __future__ import annotations

import difflib
import re

MMAD_LETTER = re.compile(r"\b([A-E])\b")
_WORD = re.compile(r"[a-z0-9]+")


def normalize(text: str) -> str:
    """Lower-case words joined by single spaces: what option texts and replies are compared as."""
    return " ".join(_WORD.findall(text.lower()))


def parse_letter(reply: str, options: dict[str, str]) -> str:
    """The option letter a reply names, or "" when it names none (or several only by text)."""
    letters = "".join(sorted(k for k in options if len(k) == 1 and k.isalpha()))
    if letters:
        m = re.search(rf"\b([{letters}])\b", reply)
        if m:
            return m.group(1)
    said = normalize(reply)
    if not said:
        return ""
    exact = [k for k, v in options.items() if normalize(v) == said]
    if len(exact) == 1:
        return exact[0]
    stated = [k for k, v in options.items() if normalize(v) and re.search(rf"\b{re.escape(normalize(v))}\b", said)]
    return stated[0] if len(stated) == 1 else ""


def parse_letter_mmad(reply: str, options: dict[str, str]) -> str:
    """MMAD's own parse of a freely generated reply.

    jam-cc/MMAD `GPT4Query.parse_answer` (evaluation/examples/GPT4/gpt4v.py) collects every
    `\\b([A-E])\\b` and the query script keeps the last one (`gpt_answer[-1]`); with none, the
    option text closest to the whole reply by difflib (cutoff 0, so any option text wins over
    nothing). The letter may name no option (an "E" among A-D); `read_letter` makes that "".
    """
    found = MMAD_LETTER.findall(reply or "")
    if found:
        return found[-1]
    texts = list(options.values())
    close = difflib.get_close_matches(reply or "", texts, n=1, cutoff=0.0) if texts else []
    return next((k for k, v in options.items() if close and v == close[0]), "")


def read_letter(reply: str, options: dict[str, str], *, free: bool = False) -> str:
    """The option letter a multiple-choice reply chose, or "" (unparsed): what serving answers and scoring counts.

    Args:
        free: the reply was generated without a constraint, so it is read by MMAD's reference rule.
    """
    letter = parse_letter_mmad(reply, options) if free else parse_letter(reply, options)
    return letter if letter in options else ""


def parse_yes_no(reply: str) -> bool | None:
    """True for a yes, False for a no, None when the reply says neither or both."""
    words = set(_WORD.findall(reply.lower()))
    yes, no = "yes" in words or "true" in words, "no" in words or "false" in words
    return yes if yes != no else None


def _overlap(a: str, b: str) -> float:
    """Word-overlap F1 of two normalised texts, the SQuAD answer metric."""
    wa, wb = a.split(), b.split()
    common = sum(min(wa.count(w), wb.count(w)) for w in set(wa))
    if not common:
        return 0.0
    p, r = common / len(wa), common / len(wb)
    return 2 * p * r / (p + r)


def match_option(reply: str, options: dict[str, str]) -> tuple[str, float]:
    """Open QA: the option whose text is closest to a free answer, and the score.

    Word-overlap F1, ties broken by character similarity; no shared word or a
    tie that similarity cannot break gives ("", 0.0).
    """
    said = normalize(reply)
    if not said:
        return "", 0.0
    scored = []
    for k, v in options.items():
        text = normalize(v)
        f1 = _overlap(said, text)
        scored.append((f1, difflib.SequenceMatcher(None, said, text).ratio(), k))
    scored.sort(reverse=True)
    best = scored[0]
    if best[0] == 0.0:
        return "", 0.0
    if len(scored) > 1 and scored[1][:2] == best[:2]:
        return "", 0.0
    return best[2], best[0]
