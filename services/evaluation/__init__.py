"""The evaluation harness (`echo-iad eval`): MMAD-format runs through the Inspector, reports, ablations, comparisons.

Modules, in the order data flows through them:
    cells    request settings of one run and the paper's ablation grid
    answers  the crash-safe, resumable answers.jsonl of a run
    runner   send every question (embedded server or --server), durably
    report   Table 1, MMAD's seven types, per category, latency; md/csv/png
    ablation the paper's Tables 1-4, Fig. 5 and Fig. 6 from a grid of runs
    compare  per-cell differences between two runs with McNemar's test
    stats    Wilson and chance intervals, McNemar
"""
