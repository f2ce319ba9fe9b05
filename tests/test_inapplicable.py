"""inapplicable_keys: the keys it calls inert really change nothing, and rows say null."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from hgsearch.config import FIELDS, TrialConfig
from hgsearch.inapplicable import inapplicable_keys
from hgsearch.models import build_model
from hgsearch.regularizers import hgsr_loss
from hgsearch.results import empty_metrics, honest_row, load_results, write_row

OTHER = {"reg_levels": (1, 2), "reg_outer": ("sqrt", "square"),
         "reg_grouping": ("input", "output"), "mix": (0.0, 0.3, 1.0), "lam": (0.0, 1e-3)}


def _penalty(model, values: dict) -> float:
    c = {**TrialConfig().to_dict(), **values}
    with torch.no_grad():
        return float(hgsr_loss(model, reg=c["reg"], levels=c["reg_levels"], outer=c["reg_outer"],
                               grouping=c["reg_grouping"], lam=c["lam"], mix=c["mix"]))


@pytest.mark.parametrize("setting", [
    {"reg": "none"}, {"reg": "l1"}, {"lam": 0.0}, {"mix": 0.0}, {"reg_levels": 1},
    {"reg": "group_lasso", "reg_levels": 1}, {"reg": "exclusive", "mix": 0.0},
    {"reg": "group_l12", "reg_levels": 2, "mix": 0.4, "lam": 1e-3},
])
def test_keys_called_inapplicable_do_not_change_the_penalty(setting):
    # A second computation of the rule: the penalty itself (regularizers.py) must not move
    # when an inapplicable HGSR key moves, and must move for an applicable one.
    torch.manual_seed(0)
    model = build_model("resnet20", 10, [4, 4, 4, 4, 4, 4, 4, 4, 4])
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(torch.rand_like(p) * 2)
    off = inapplicable_keys(setting)
    base = _penalty(model, setting)
    for key, values in OTHER.items():
        if key in setting:
            continue
        changed = {_penalty(model, {**setting, key: v}) for v in values}
        if key in off:
            assert changed == {base}, key
        elif _penalty(model, setting) != 0:
            assert len(changed) > 1, f"{key} changes the penalty but is not called applicable"


def test_the_baseline_and_flat_groups():
    baseline = inapplicable_keys({"reg": "none", "lam": 0.0, "prune_ratio": 0.0})
    assert {"reg_levels", "reg_outer", "reg_grouping", "score_samples", "mix", "lam",
            "prune_target", "round_to"} <= baseline
    assert "reg" not in baseline and "prune_ratio" not in baseline and "epochs" not in baseline
    assert inapplicable_keys({"reg_levels": 1}) >= {"reg_outer"}
    assert "reg_outer" not in inapplicable_keys(TrialConfig())
    assert inapplicable_keys({"dataset": "imagefolder", "data_dir": "x"}).isdisjoint(
        {"image_size", "data_dir", "cache_dir"})
    assert inapplicable_keys({}) <= set(FIELDS)


def test_the_solver_decides_what_the_shape_keys_do():
    """Subgradients read the shape keys only through the penalty; the proximal step also picks
    its operator by reg_levels and zeroes groups by reg_grouping (hgsearch/proximal.py)."""
    sub = {"reg_solver": "subgradient"}
    prox = {"reg_solver": "proximal"}
    shape = {"reg_levels", "reg_outer", "reg_grouping"}
    assert shape <= inapplicable_keys({**sub, "mix": 0.0})
    assert inapplicable_keys({**prox, "mix": 0.0, "reg": "group_lasso"}) & shape == {"reg_outer"}
    assert inapplicable_keys({**prox, "mix": 0.0, "reg": "group_l12"}) & shape == {
        "reg_levels", "reg_outer"}
    assert "reg_grouping" in inapplicable_keys({**sub, "reg": "l1"})
    assert inapplicable_keys({**prox, "reg": "l1"}) & shape == {"reg_levels", "reg_outer"}
    for off in ({"reg": "none"}, {"lam": 0.0}):
        for solver in (sub, prox):
            assert {"reg_solver", "lam_scale"} <= inapplicable_keys({**solver, **off})
    assert not {"reg_solver", "lam_scale"} & inapplicable_keys(TrialConfig())
    assert "nesterov" in inapplicable_keys({"momentum": 0.0, "nesterov": True})


def test_nulling_is_idempotent_and_written(tmp_path):
    row = {**TrialConfig(trial_id="b", reg="none", lam=0.0, prune_ratio=0.0).to_dict(),
           **empty_metrics(), "status": "ok"}
    once = honest_row(row)
    assert honest_row(once) == once
    write_row(tmp_path, row)
    df = load_results(tmp_path)
    for key in ("reg_levels", "reg_outer", "reg_grouping", "score_samples", "lam", "mix",
                "reg_solver", "lam_scale"):
        assert pd.isna(df[key][0]), key
    assert df.reg[0] == "none" and df.prune_ratio[0] == 0.0 and df.epochs[0] == 5



@pytest.mark.parametrize("setting,key,values", [
    ({"dataset": "synthetic"}, "data_memory_gb", (0.0, 1e-6)),
    ({"dataset": "synthetic"}, "data_workers", (0, 7)),
    ({"data_path": "memory"}, "data_memory_gb", (0.0, 1e-6)),
    ({"data_path": "memory"}, "data_workers", (0, 7)),
])
def test_data_path_keys_called_inapplicable_change_nothing_loaded(tmp_path, setting, key, values):
    # The data itself, loaded twice: an inert data-path key must leave every split as it was
    # (a budget of 1e-6 GB would make an auto path stream an image folder).
    from hgsearch.config import make_config
    from hgsearch.data import load_dataset
    from tests.data_fixtures import write_imagefolder

    if setting.get("dataset") != "synthetic":
        write_imagefolder(tmp_path / "folder")
        setting = {**setting, "dataset": "imagefolder", "data_dir": str(tmp_path / "folder"),
                   "cache_dir": str(tmp_path / "cache")}
    small = {**setting, "synthetic_train_size": 100, "synthetic_test_size": 10}
    assert key in inapplicable_keys(small)
    a, b = (load_dataset(make_config({**small, key: v})) for v in values)
    for name in ("train_x", "train_y", "val_x", "test_x"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
