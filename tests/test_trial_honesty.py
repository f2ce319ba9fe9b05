"""A trial's latency (dense and compact timed interleaved, with spread) and its warnings."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from hgsearch.results import load_results, row_warnings
from hgsearch.trial import run_trial
from tests.test_trial import _Recorder


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


@pytest.mark.slow   # tens of seconds: make test-slow (CI runs it)
@pytest.mark.parametrize("phase, dense_timed", [("trained", True), ("pruned", False)])
def test_a_resumed_trial_times_the_dense_net_only_while_it_has_it(tiny, phase, dense_timed):
    recorder = _Recorder()
    keys = {**tiny, "prune_ratio": 0.5, "finetune_epochs": 0, "latency_repeats": 5}
    run_trial({**keys, "trial_id": "s"}, log=None, checkpoint=recorder)
    state = next(s for s in recorder.states if s["phase"] == phase)

    class FromState(_Recorder):
        def load(self):
            return copy.deepcopy(state)

    lines: list[str] = []
    row = run_trial({**keys, "trial_id": "r"}, log=lines.append, checkpoint=FromState())
    assert row["latency_final_b1_ms"] > 0 and row["latency_final_bN_ms"] > 0
    assert (row["latency_dense_b1_ms"] is not None) == dense_timed
    assert (row["latency_b1_significant"] is not None) == dense_timed
    assert any("not timed beside" in line for line in lines) == (not dense_timed)
