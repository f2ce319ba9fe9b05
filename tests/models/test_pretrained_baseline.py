"""The pretrained baseline: with init_weights, a sweep's baseline is the given network as it is."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from hgsearch.config import make_config
from hgsearch.data import load_dataset
from hgsearch.models import build_model
from hgsearch.results import load_curves, load_results
from hgsearch.search.baseline import early_stop_default, parse_baseline
from hgsearch.search.space import Param
from hgsearch.search.space_file import load_space
from hgsearch.trial import run_trial

REPO = Path(__file__).resolve().parents[2]


def given_network(tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(3)
    net = build_model("resnet20", 10)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    return net.eval(), tmp_path / "w.pt"


def test_skip_training_needs_init_weights():
    with pytest.raises(Exception, match="skip_training=true: only with init_weights"):
        make_config({"skip_training": True})


def test_the_baseline_trial_evaluates_the_given_network_untrained(tiny, tmp_path):
    net, weights = given_network(tmp_path)
    row = run_trial({**tiny, "trial_id": "b", "init_weights": str(weights),
                     "skip_training": True, "finetune_epochs": 0, "reg": "none",
                     "prune_ratio": 0.0}, log=None)
    assert row["status"] == "ok"
    data = load_dataset(make_config(tiny))
    x = (data.val_x.float() / 255 - torch.tensor(data.mean).view(1, 3, 1, 1)) / torch.tensor(
        data.std).view(1, 3, 1, 1)
    with torch.no_grad():
        by_hand = (net(x).argmax(1) == data.val_y).float().mean().item()
    df = load_results(tiny["out_dir"])
    assert df.acc_dense[0] == pytest.approx(by_hand, abs=1e-6)
    assert df.acc_final[0] == df.acc_dense[0] == df.acc_init[0]
    assert df.params_ratio[0] == 1.0 and df.images_train[0] == 0
    assert not pd.isna(df.latency_final_b1_ms[0]) and not pd.isna(df.test_acc_final[0])
    assert len(load_curves(tiny["out_dir"])) == 0           # nothing was trained


def test_the_given_network_is_evaluated_once_per_split(tiny, tmp_path, monkeypatch):
    import hgsearch.phases as phases
    seen: list[tuple[int, str]] = []
    accuracy = phases._Trial.accuracy

    def counted(self, net, split):
        seen.append((id(net), split))
        return accuracy(self, net, split)

    monkeypatch.setattr(phases._Trial, "accuracy", counted)
    _, weights = given_network(tmp_path)
    row = run_trial({**tiny, "trial_id": "b", "init_weights": str(weights),
                     "skip_training": True, "finetune_epochs": 0, "reg": "none",
                     "prune_ratio": 0.0}, log=None)
    assert row["status"] == "ok"
    repeated = {k for k in seen if seen.count(k) > 1}
    assert not repeated, f"evaluated twice: {repeated} in {seen}"


def test_a_sweep_from_weights_gets_the_pretrained_baseline_values():
    problems: list[str] = []
    fixed = {"init_weights": "w.pt", "arch": "resnet20"}
    # lr is searched: it needs no baseline value, as the pretrained baseline trains nothing.
    searched = [Param("lr", "loguniform", low=0.01, high=0.1)]
    changes = parse_baseline(True, fixed, searched, lambda k, m: problems.append(f"{k}: {m}"))
    assert problems == []
    assert changes["skip_training"] is True and changes["finetune_epochs"] == 0
    assert changes["prune_ratio"] == 0.0 and changes["reg"] == "none"
    assert early_stop_default(fixed, [], changes) == {}
    plain = parse_baseline(True, {"arch": "resnet20"}, [], lambda k, m: problems.append(k))
    assert "skip_training" not in plain
    assert early_stop_default({}, [], plain) == {"early_stop": True}


def test_the_shipped_imagefolder_space_starts_from_weights():
    space = load_space(REPO / "search_spaces" / "imagefolder_resnet50.yaml")
    assert space.fixed["arch"] == "resnet50" and space.fixed["init_weights"]
    assert space.baseline["skip_training"] is True


@pytest.mark.slow
def test_small_sweep_from_a_users_checkpoint(tmp_path):
    from hgsearch.search.driver import run_sweep

    _, weights = given_network(tmp_path)
    space = {"fixed": {"dataset": "synthetic", "synthetic_train_size": 200,
                       "synthetic_test_size": 50, "arch": "resnet20",
                       "init_weights": str(weights), "epochs": 1, "finetune_epochs": 1,
                       "batch_size": 50, "score_samples": 16, "latency_repeats": 1,
                       "latency_batch": 2, "device": "cpu", "cache_dir": str(tmp_path / "c")},
             "search": {"lam": {"loguniform": [1.0e-5, 1.0e-3]},
                        "prune_ratio": {"uniform": [0.2, 0.5]}},
             "objectives": {"acc_final": "max", "params_ratio": "min"},
             "sampler": {"name": "random", "seed": 0}, "num_samples": 2,
             "max_concurrent": 1, "resources": {"cpu": 1, "gpu": 0}, "baseline": True}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO),
                                                             os.environ.get("PYTHONPATH")])))
        run_sweep(path, results=tmp_path / "results", num_cpus=1, log=lambda _line: None)
    df = load_results(tmp_path / "results" / "space")
    assert len(df) == 3 and set(df.status) == {"ok"}
    base = df[df.is_baseline.fillna(False)].iloc[0]
    assert base.skip_training and base.images_train == 0 and base.acc_final == base.acc_init
    searched = df[~df.is_baseline.fillna(False)]
    assert (searched.images_train > 0).all() and (searched.params_ratio < 1).all()
    assert set(df.init_weights_sha256) == {base.init_weights_sha256}
