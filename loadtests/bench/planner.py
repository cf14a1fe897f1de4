"""Benchmark the question-type planner on wording it was never tuned on.

Prints ONE JSON line: accuracy on tests/gateway/planner_frozen_eval.jsonl (written
before the planner was tuned) and on planner_tuning.jsonl, with the lexical cues
on and off; the baseline, measured in the same run, is the planner without the
options as evidence (the question's wording only). Also the classifier's p50
latency per free-form question.

    python -m loadtests.bench.planner
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from loadtests.kit.app import build_classifier

ROOT = Path(__file__).resolve().parents[2]

SETS = {
    "frozen": ROOT / "tests/gateway/planner_frozen_eval.jsonl",
    "tuning": ROOT / "tests/gateway/planner_tuning.jsonl",
}


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()  # no options; --help says so
    clf = build_classifier()
    rows = {name: load(path) for name, path in SETS.items()}
    out: dict = {"bench": "planner", "questions": {k: len(v) for k, v in rows.items()}}
    ms: list[float] = []
    for cues in (True, False):
        clf.cues = cues
        for with_options in (True, False):
            for name, items in rows.items():
                hits = 0
                for r in items:
                    t = time.perf_counter()
                    guess = clf.classify(r["question"], r["options"] if with_options else None)
                    ms.append((time.perf_counter() - t) * 1000)
                    hits += guess.type == r["type"]
                key = f"{name}_cues_{'on' if cues else 'off'}" + ("" if with_options else "_baseline_no_options")
                out[key] = round(100 * hits / len(items), 1)
    out["classify_p50_ms"] = round(statistics.median(ms), 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
