"""Load tests and benchmarks, run from a checkout as modules (`python -m loadtests.bench.gateway --help`).

- bench/: benchmarks, each printing one JSON line with its figure and the baseline from the same run.
- drills/: capacity, overload, soak, fault and fuzz drills against a running `echo-iad serve`.
- locust/: the Locust users (Inspector and each stage) and the scenario runner.
- kit/: what they share: a system under test and Locust runs (load.py), fuzz inputs (fuzz.py), the
  measurements several benchmarks take alike (bench.py), and the composition root's imports (app.py).

`locust` comes with the `[load]` extra; nothing under services/ or deploy/ imports it.
"""
