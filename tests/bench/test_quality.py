"""The quality benchmark runs end to end at a micro scale and writes valid, complete JSON."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from hgsearch.bench.quality import CRITERIA, TINY, QualityScale, format_quality, run_quality

pytestmark = pytest.mark.usefixtures("one_thread")


def test_quality_grid_runs_and_writes_valid_json(tmp_path):
    scale = QualityScale(
        base={**TINY.base, "synthetic_train_size": 100, "synthetic_test_size": 20,
              "batch_size": 40, "finetune_epochs": 1, "score_samples": 16,
              "cache_dir": str(tmp_path / "cache")},
        seeds=(0, 1), ratios=(0.5, 0.7), recalibrate=16, criteria=CRITERIA,
        settings={"hgsr_proximal": {"reg": "group_l12", "lam": 2e-3,
                                    "reg_solver": "proximal"}})
    out = tmp_path / "q.json"
    report = run_quality(scale, device="cpu", out=out, log=None)
    on_disk = json.loads(out.read_text())          # strict JSON: no NaN
    assert on_disk["complete"] is True and on_disk["format"] == report["format"]
    assert len(on_disk["dense"]) == 2                           # seeds x settings
    assert len(on_disk["runs"]) == 2 * len(CRITERIA) * 2        # x criteria x ratios
    for run in on_disk["runs"]:
        assert 0 <= run["acc_pruned"] <= 1 and 0 <= run["acc_final"] <= 1
        removed = 1 - run["params_ratio"]
        assert run["ratio"] <= removed < run["ratio"] + 0.05     # the budget is met, just
    rows = on_disk["summary"]["rows"]
    assert len(rows) == len(CRITERIA) * 2
    # The summary is the mean over seeds of the runs: recomputed here from the runs.
    for row in rows:
        runs = [r for r in on_disk["runs"] if (r["setting"], r["criterion"], r["ratio"]) ==
                (row["setting"], row["criterion"], row["ratio"])]
        assert row["seeds"] == 2
        assert math.isclose(row["acc_final"], statistics.fmean(r["acc_final"] for r in runs))
    for ratio, win in on_disk["summary"]["winners"].items():
        best = max(r["acc_final"] for r in rows if str(r["ratio"]) == ratio)
        assert win["acc_final"] == best
    assert len(format_quality(on_disk)) == 2 + len(rows)
