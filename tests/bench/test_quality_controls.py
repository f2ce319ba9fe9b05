"""The quality benchmark's controls: the best pruned network against scratch, uniform and
Torch-Pruning's group-magnitude pruning, paired by seed."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from hgsearch.bench import torch_pruning_peer
from hgsearch.bench.quality import TINY, QualityScale, run_quality
from hgsearch.bench.quality_controls import format_controls, summarize_controls
from hgsearch.metrics import count_params
from hgsearch.models import build_model
from hgsearch.search.controls import TOLERANCE
from hgsearch.widths import parse_widths

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(seed, ratio, acc, test, setting="none", criterion="taylor"):
    return {"setting": setting, "criterion": criterion, "seed": seed, "ratio": ratio,
            "acc_final": acc, "test_acc_final": test, "params_ratio": 0.5}


def test_summary_pairs_each_control_with_its_seeds_pruned_network():
    """By hand: pruned val 0.80, 0.90; scratch 0.70, 0.95 -> gaps +0.10, -0.05: mean 0.025,
    std 0.075 * sqrt(2) = 0.10607; ahead in 1 of 2 seeds. The losing criterion is ignored."""
    report = {
        "summary": {"winners": {"0.5": {"setting": "none", "criterion": "taylor",
                                        "acc_final": 0.85}}},
        "runs": [_run(0, 0.5, 0.80, 0.78), _run(1, 0.5, 0.90, 0.88),
                 _run(0, 0.5, 0.10, 0.10, criterion="random")],
        "controls": [{"kind": "scratch", "ratio": 0.5, "seed": s, "val_acc": v, "test_acc": t,
                      "params_ratio": 0.5, "diverged": False}
                     for s, v, t in ((0, 0.70, 0.70), (1, 0.95, 0.90))],
        "peers": [{"ratio": 0.5, "seed": 0, "params_ratio": 0.49, "acc_final": 0.6,
                   "test_acc_final": 0.5}]}
    pruned, scratch, peer = summarize_controls(report)
    assert pruned["network"] == "pruned: none + taylor" and pruned["seeds"] == 2
    assert math.isclose(pruned["val_acc"], 0.85) and "paired_seeds" not in pruned
    assert scratch["network"] == "scratch" and scratch["paired_seeds"] == 2
    assert math.isclose(scratch["pruned_minus_val_acc"], 0.025)
    assert math.isclose(scratch["pruned_minus_val_acc_std"], 0.075 * math.sqrt(2))
    assert math.isclose(scratch["pruned_minus_test_acc"], (0.08 - 0.02) / 2)
    assert scratch["pruned_ahead_test_acc"] == 1
    assert peer["network"] == "torch_pruning" and peer["paired_seeds"] == 1
    assert math.isclose(peer["pruned_minus_test_acc"], 0.28)
    assert peer["pruned_minus_test_acc_std"] == 0.0
    table = format_controls({**report, "control_summary": [pruned, scratch, peer]})
    assert table[3].startswith("| 50% | scratch | 0.500 | 82.5 ± 17.7 | 80.0 ± 14.1 | 2.5 ± 10.6")


@pytest.mark.skipif(not torch_pruning_peer.available(), reason="torch-pruning not installed")
@pytest.mark.parametrize("removed", [0.5, 0.7])
def test_torch_pruning_meets_the_budget_by_its_own_count(removed):
    import torch_pruning as tp

    torch.manual_seed(0)
    model = build_model("resnet20", 10).eval()
    pruned = torch_pruning_peer.group_magnitude_pruned(model, removed, 32)
    example = torch.randn(2, 3, 32, 32)
    _, params = tp.utils.count_ops_and_params(pruned, example)
    _, full = tp.utils.count_ops_and_params(model, example)
    assert count_params(pruned) == params
    assert 1 - removed - 0.02 <= params / full <= 1 - removed       # met, just
    assert pruned(example).shape == (2, 10)
    assert count_params(model) == full                               # the original untouched


@pytest.mark.slow   # tens of seconds: make test-slow (CI runs it)
def test_controls_take_the_best_pruned_networks_size(tmp_path):
    scale = QualityScale(
        base={**TINY.base, "synthetic_train_size": 100, "synthetic_test_size": 20,
              "batch_size": 40, "score_samples": 16, "cache_dir": str(tmp_path / "cache")},
        seeds=(0, 1), ratios=(0.5, 0.7), recalibrate=16, criteria=("loss_increase", "bn_scale"),
        settings={"none": {"reg": "none", "lam": 0.0}})
    report = run_quality(scale, device="cpu", log=None)
    assert report["complete"]
    kinds = ["scratch", "uniform"]
    assert len(report["controls"]) == 2 * 2 * len(kinds)         # ratios x seeds x kinds
    for control in report["controls"]:
        assert control["diverged"] is False and 0 <= control["test_acc"] <= 1
        winner = report["summary"]["winners"][str(control["ratio"])]
        pruned, = (r for r in report["runs"] if r["seed"] == control["seed"] and
                   r["ratio"] == control["ratio"] and
                   (r["setting"], r["criterion"]) == (winner["setting"], winner["criterion"]))
        widths = parse_widths(control["widths"])
        built = count_params(build_model("resnet20", 10, widths))
        assert built == control["params"]
        if control["kind"] == "scratch":
            assert widths == pruned["widths"]
        else:
            assert abs(built - pruned["params"]) <= TOLERANCE * pruned["params"]
    if torch_pruning_peer.available():
        assert [(p["seed"], p["ratio"]) for p in report["peers"]] == [
            (0, 0.5), (0, 0.7), (1, 0.5), (1, 0.7)]
        assert all(p["params_ratio"] <= 1 - p["ratio"] for p in report["peers"])
    rows = report["control_summary"]
    networks = [r["network"] for r in rows]
    peers = ["torch_pruning"] if report["peers"] else []
    assert len(rows) == 2 * (1 + len(kinds) + len(peers))
    for row in rows:
        if "paired_seeds" not in row:
            continue
        gaps = []
        for control in (c for c in report["controls"] if c["kind"] == row["network"] and
                        c["ratio"] == row["ratio"]):
            best = report["summary"]["winners"][str(row["ratio"])]
            pruned, = (r for r in report["runs"] if r["seed"] == control["seed"] and
                       r["ratio"] == row["ratio"] and
                       (r["setting"], r["criterion"]) == (best["setting"], best["criterion"]))
            gaps.append(pruned["test_acc_final"] - control["test_acc"])
        if gaps:
            assert math.isclose(row["pruned_minus_test_acc"], statistics.fmean(gaps))
    assert networks.count("scratch") == 2
