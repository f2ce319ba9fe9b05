"""A trial's latency (dense and compact timed interleaved, with spread) and its warnings."""

from __future__ import annotations

import pandas as pd

from hgsearch.results import load_results, row_warnings
from hgsearch.trial import run_trial


def test_trial_times_dense_and_final_together_and_writes_its_warnings(tiny):
    lines: list[str] = []
    # One epoch on 300 images: chance accuracy; a tiny lam under the proximal solver: no zeros.
    row = run_trial({**tiny, "trial_id": "h", "prune_ratio": 0.5, "latency_repeats": 5,
                     "reg": "group_l12", "lam": 1e-9, "reg_solver": "proximal",
                     "finetune_epochs": 0}, log=lines.append)
    df = load_results(tiny["out_dir"])
    stored = df.iloc[0]
    for tag in ("b1", "bN"):
        for name in ("dense", "final"):
            assert stored[f"latency_{name}_{tag}_ms"] > 0
            assert stored[f"latency_{name}_{tag}_iqr_ms"] >= 0
        diff = abs(stored[f"latency_dense_{tag}_ms"] - stored[f"latency_final_{tag}_ms"])
        spread = max(stored[f"latency_dense_{tag}_iqr_ms"], stored[f"latency_final_{tag}_iqr_ms"])
        assert bool(stored[f"latency_{tag}_significant"]) == (diff > spread)
    expected = row_warnings(row)
    assert expected and any("no exactly-zero filter" in w for w in expected)
    assert stored["warnings"] == "; ".join(expected)
    assert any("warning" in line and expected[0] in line for line in lines)
    assert not pd.isna(stored["acc_pruned"])
