"""The quality benchmark runs end to end at a micro scale and writes valid, complete JSON."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from hgsearch.bench.quality import (
    CRITERIA,
    TINY,
    QualityScale,
    format_dense,
    format_quality,
    run_quality,
)
from hgsearch.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow   # tens of seconds: make test-slow (CI runs it)
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
    dense = format_dense(on_disk)
    assert len(dense) == 2 + 2 and dense[2].startswith("| hgsr_proximal | 0 | ")


@pytest.mark.slow   # tens of seconds: make test-slow (CI runs it)
def test_two_jobs_give_the_report_of_one(tmp_path):
    """Each (seed, setting) pair seeds its own generators: run in two worker processes, the
    figures and their order equal those of the serial run."""
    scale = QualityScale(
        base={**TINY.base, "synthetic_train_size": 100, "synthetic_test_size": 20,
              "batch_size": 40, "score_samples": 16, "cache_dir": str(tmp_path / "cache")},
        seeds=(0, 1), ratios=(0.5,), recalibrate=16, criteria=("loss_increase", "bn_scale"),
        settings={"none": {"reg": "none", "lam": 0.0}})
    serial = run_quality(scale, device="cpu", log=None)
    pooled = run_quality(scale, device="cpu", log=None, jobs=2)

    def figures(report):
        dense, controls = ([{k: v for k, v in d.items() if k != "train_s"} for d in report[part]]
                           for part in ("dense", "controls"))
        return dense, report["runs"], report["peers"], controls

    assert figures(pooled) == figures(serial)
    assert [(d["seed"], d["setting"]) for d in pooled["dense"]] == [(0, "none"), (1, "none")]
    assert all(d["diverged"] is False and 0 <= d["acc_zero_pruned"] <= 1
               for d in serial["dense"])


@pytest.mark.parametrize("args, message", [
    (["--suite", "quality", "--jobs", "0"], "--jobs 0: expected a number of processes >= 1"),
    (["--jobs", "2"], "--jobs: applies to --suite quality only"),
    (["--suite", "sweep-cost", "--jobs", "2"], "--jobs: applies to --suite quality only"),
])
def test_bad_jobs_exit_2_in_one_line(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert main(["bench", "--device", "cpu", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_diverged_training_is_a_result_not_a_crash(tmp_path, monkeypatch):
    import hgsearch.train as train_module

    real_train = train_module.train

    def train(model, data, *, settings, **kwargs):     # the "boom" setting's lr diverges
        if settings.lr == 0.123:
            raise train_module.Diverged("loss is nan at epoch 1")
        return real_train(model, data, settings=settings, **kwargs)

    monkeypatch.setattr(train_module, "train", train)
    scale = QualityScale(
        base={**TINY.base, "synthetic_train_size": 100, "synthetic_test_size": 20,
              "batch_size": 40, "score_samples": 16, "cache_dir": str(tmp_path / "cache")},
        seeds=(0,), ratios=(0.5,), recalibrate=16, criteria=("bn_scale",),
        settings={"boom": {"reg": "none", "lam": 0.0, "lr": 0.123},
                  "none": {"reg": "none", "lam": 0.0}}, controls=())
    out = tmp_path / "q.json"
    report = run_quality(scale, device="cpu", out=out, log=None)
    boom, fine = json.loads(out.read_text())["dense"]
    assert boom["diverged"] is True and "loss" in boom["error"].lower()
    assert fine["diverged"] is False and report["complete"]
    assert {r["setting"] for r in report["runs"]} == {"none"}
    assert format_dense(report)[2] == "| boom | 0 | diverged | | | | |"
    assert set(report["summary"]["dense_val_acc"]) == {"none"}
