"""hgsearch.bench.lam_reach: the grid runs end to end and its summary reads the rows right."""

from __future__ import annotations

import json

import pytest

from hgsearch.bench import lam_reach

pytestmark = pytest.mark.usefixtures("one_thread")


def test_first_lam_is_the_smallest_lam_reaching_the_share():
    rows = [{"reg": "l1", "lam_scale": "none", "lam": lam, "zero_filter_fraction": z}
            for lam, z in ((1e-1, 0.6), (1e-3, 0.0), (1e-2, 0.2))]
    rows.append({"reg": "exclusive", "lam_scale": "none", "lam": 1e-1,
                 "zero_filter_fraction": 0.0})
    assert lam_reach.first_lam(rows, 0.1) == {("l1", "none"): 1e-2, ("exclusive", "none"): None}
    assert lam_reach.first_lam(rows, 0.5)[("l1", "none")] == 1e-1


def test_main_writes_a_row_per_grid_point(tmp_path, monkeypatch):
    monkeypatch.setitem(lam_reach.LAMS, "none", (0.0, 3.0))
    out = tmp_path / "reach.json"
    lam_reach.main(["--families", "l1", "--lam-scale", "none", "--epochs", "1",
                    "--train-size", "100", "--batch-size", "45", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [(r["reg"], r["lam"]) for r in rows] == [("l1", 0.0), ("l1", 3.0)]
    # lam 0 leaves every filter; lam 3 thresholds every weight of the first step to zero
    assert rows[0]["zero_filter_fraction"] == 0.0 and rows[1]["zero_filter_fraction"] == 1.0
    onset = json.loads(out.read_text())["onset"]
    assert onset == [{"reg": "l1", "lam_scale": "none", "share": 0.1, "lam": 3.0}]


def test_the_initial_l1_penalty_is_the_sum_of_the_regularized_weights_magnitudes():
    import torch

    from hgsearch.models import build_model
    from hgsearch.regularizers import regularized_weights

    torch.manual_seed(0)
    model = build_model("resnet20", 10)
    by_hand = sum(float(w.detach().double().abs().sum()) for w in regularized_weights(model))
    got = lam_reach.initial_penalties("resnet20", ["l1", "group_lasso"])
    assert got["l1"] == pytest.approx(by_hand, rel=1e-5)
    assert 0 < got["group_lasso"] < got["l1"]      # sum of group norms <= sum of magnitudes
