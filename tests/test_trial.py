from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import torch

from hgsearch.config import make_config
from hgsearch.data import DeviceData, load_dataset
from hgsearch.models import build_model, load_model
from hgsearch.results import load_curves, load_results
from hgsearch.trial import run_trial


def plain_accuracy(model: torch.nn.Module, x_uint8, y, mean, std) -> float:
    """Top-1 by hand: normalize, one forward, compare (independent of hgsearch.train)."""
    x = (x_uint8.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1)
    with torch.no_grad():
        return (model.eval()(x).argmax(1) == y).float().mean().item()


def test_trial_writes_a_complete_row_curve_and_model(tiny):
    row = run_trial({**tiny, "trial_id": "t1", "prune_ratio": 0.5}, log=None)
    assert row["status"] == "ok"
    df = load_results(tiny["out_dir"])
    assert len(df) == 1 and df.trial_id[0] == "t1"
    for col in ("acc_dense", "acc_pruned", "acc_final", "test_acc_final", "params_ratio",
                "macs_ratio", "zero_group_fraction", "latency_final_b1_ms", "seconds_total"):
        assert not pd.isna(df[col][0]), col
    assert 0 < df.params_ratio[0] < 0.8 and 0 < df.macs_ratio[0] < 0.8
    assert list(df.kept_channels[0]) != list(df.widths_dense[0])
    assert df.epochs[0] == 1 and df.arch[0] == "resnet20"  # every trial key is a column

    curves = load_curves(tiny["out_dir"])
    assert list(curves.phase) == ["train", "finetune"]
    assert curves.val_acc.iloc[-1] == pytest.approx(row["acc_final"])

    model = load_model(f"{tiny['out_dir']}/models/t1.pt")
    assert model.widths == list(df.kept_channels[0])
    data = load_dataset(make_config(tiny))
    assert plain_accuracy(model, data.val_x, data.val_y, data.mean, data.std) == pytest.approx(
        row["acc_final"], abs=1e-6)
    assert plain_accuracy(model, data.test_x, data.test_y, data.mean, data.std) == pytest.approx(
        row["test_acc_final"], abs=1e-6)


def test_baseline_trial_keeps_the_network(tiny):
    row = run_trial({**tiny, "reg": "none", "prune_ratio": 0.0, "finetune_epochs": 0}, log=None)
    assert row["params_ratio"] == 1.0 and row["macs_ratio"] == 1.0
    assert row["acc_pruned"] == row["acc_dense"] == row["acc_final"]


@pytest.mark.slow   # two 5-epoch trials: about 5 minutes on one core
def test_regularization_sparsifies_groups(tiny):
    # A few dozen SGD steps cannot drive groups to exact zero (subgradients oscillate around it),
    # but they visibly shrink some input groups relative to the layer's largest: count groups
    # under 30% of it. Without the regularizer, groups stay within ~20% of each other.
    common = {**tiny, "synthetic_train_size": 2000, "epochs": 5, "batch_size": 128,
              "prune_ratio": 0.0, "finetune_epochs": 0, "reg": "group_l12", "reg_levels": 2,
              "reg_outer": "square", "zero_tol": 0.3}
    plain = run_trial({**common, "lam": 0.0, "trial_id": "plain"}, log=None)
    sparse = run_trial({**common, "lam": 3e-3, "trial_id": "sparse"}, log=None)
    assert plain["zero_group_fraction"] < 0.01
    assert sparse["zero_group_fraction"] > 0.05


def test_divergence_is_recorded_not_raised(tiny):
    row = run_trial({**tiny, "lr": 1e6, "trial_id": "boom"}, log=None)
    assert row["status"] == "diverged" and "loss became" in row["error"]
    df = load_results(tiny["out_dir"])
    assert df.status[0] == "diverged" and math.isnan(df.acc_final[0])


def test_a_crash_writes_a_failed_row_and_reraises(tiny, monkeypatch):
    import hgsearch.phases as trial_phases

    def broken(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(trial_phases, "count_params", broken)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_trial({**tiny, "trial_id": "crash"}, log=None)
    df = load_results(tiny["out_dir"])
    assert df.status[0] == "failed" and "simulated crash" in df.error[0]


def test_device_data_matches_dataset(tiny):
    data = load_dataset(make_config(tiny))
    dd = DeviceData(data.val_x, data.val_y, mean=data.mean, std=data.std,
                    device=torch.device("cpu"))
    n = sum(len(y) for _, y in dd.eval_batches(64))
    assert n == len(data.val_y)


def test_a_restarted_trial_resumes_from_its_checkpoint_and_ends_the_same(tiny, monkeypatch):
    """Crash in fine-tuning epoch 2, rerun: training and scoring are skipped, the result is
    identical to an uninterrupted run with the same seed."""
    import hgsearch.phases as trial_phases
    from hgsearch.checkpoint import FileCheckpointer

    keys = {**tiny, "epochs": 2, "finetune_epochs": 2, "checkpoint_every": 1}
    straight = run_trial({**keys, "trial_id": "straight"}, log=None)

    calls = _crash_in(monkeypatch, trial_phases, "finetune", after_epoch=2, message="node lost")
    ckpt = FileCheckpointer(f"{tiny['out_dir']}/ckpt/resumed.pt")
    with pytest.raises(RuntimeError, match="node lost"):
        run_trial({**keys, "trial_id": "resumed"}, log=None, checkpoint=ckpt)
    assert ckpt.load()["phase"] == "finetune" and ckpt.load()["epoch"] == 2
    calls.clear()
    resumed = run_trial({**keys, "trial_id": "resumed"}, log=None, checkpoint=ckpt)
    assert calls == []  # nothing left to train: the checkpoint was taken after the last epoch
    assert resumed["status"] == "ok"
    for key in ("acc_dense", "acc_pruned", "acc_final", "test_acc_final", "params_final"):
        assert resumed[key] == straight[key], key
    a = load_model(f"{tiny['out_dir']}/models/straight.pt").state_dict()
    b = load_model(f"{tiny['out_dir']}/models/resumed.pt").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_mid_training_matches_an_uninterrupted_run(tiny, monkeypatch):
    import hgsearch.phases as trial_phases
    from hgsearch.checkpoint import FileCheckpointer

    keys = {**tiny, "epochs": 3, "finetune_epochs": 1, "checkpoint_every": 1}
    straight = run_trial({**keys, "trial_id": "s"}, log=None)
    _crash_in(monkeypatch, trial_phases, "train", after_epoch=2, message="preempted")
    ckpt = FileCheckpointer(f"{tiny['out_dir']}/ckpt/r.pt")
    with pytest.raises(RuntimeError, match="preempted"):
        run_trial({**keys, "trial_id": "r"}, log=None, checkpoint=ckpt)
    resumed = run_trial({**keys, "trial_id": "r"}, log=None, checkpoint=ckpt)
    for key in ("acc_dense", "acc_final", "kept_channels"):
        assert resumed[key] == straight[key], key
    curves = load_curves(tiny["out_dir"])
    assert list(curves[curves.trial_id == "r"].epoch) == [1, 2, 3, 1]


@pytest.mark.parametrize("phase", ["trained", "pruned"])
def test_resume_at_a_phase_boundary_matches_an_uninterrupted_run(tiny, monkeypatch, phase):
    """A state saved after HGSR training (or after pruning): the rerun trains only what comes
    after it and ends bit-identical to the run that saved it."""
    import hgsearch.phases as trial_phases

    keys = {**tiny, "prune_ratio": 0.5}
    recorder = _Recorder()
    straight = run_trial({**keys, "trial_id": "s"}, log=None, checkpoint=recorder)
    state = next(s for s in recorder.states if s["phase"] == phase)

    class FromState(_Recorder):
        def load(self):
            return copy.deepcopy(state)

    real_train, phases = trial_phases.train, []

    def spy(*args, **kwargs):
        phases.append(kwargs["phase"])
        return real_train(*args, **kwargs)

    monkeypatch.setattr(trial_phases, "train", spy)
    resumed = run_trial({**keys, "trial_id": "r"}, log=None, checkpoint=FromState())
    assert phases == ["finetune"]
    for key in ("acc_dense", "acc_pruned", "acc_final", "test_acc_final", "params_final",
                "kept_channels", "macs_dense"):
        assert resumed[key] == straight[key], key
    curves = load_curves(tiny["out_dir"])
    assert list(curves[curves.trial_id == "r"].phase) == ["train", "finetune"]
    a = load_model(f"{tiny['out_dir']}/models/s.pt").state_dict()
    b = load_model(f"{tiny['out_dir']}/models/r.pt").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def _crash_in(monkeypatch, trial_phases, phase: str, *, after_epoch: int,
              message: str) -> list[str]:
    """Make ``trial_phases.train`` raise after ``after_epoch`` of a first (not resumed) run of
    ``phase``, its checkpoint of that epoch taken; returns the phases ``train`` is called for."""
    real_train, calls = trial_phases.train, []

    def crashing_train(*args, **kwargs):
        calls.append(kwargs["phase"])
        if kwargs["phase"] == phase and kwargs.get("start_epoch", 1) == 1:
            save = kwargs["on_epoch_end"]

            def save_then_crash(epoch, optimizer):
                save(epoch, optimizer)
                if epoch == after_epoch:
                    raise RuntimeError(message)
            kwargs["on_epoch_end"] = save_then_crash
        return real_train(*args, **kwargs)

    monkeypatch.setattr(trial_phases, "train", crashing_train)
    return calls


class _Recorder:
    """A checkpointer that keeps every state a trial saves (the dense network among them)."""

    def __init__(self) -> None:
        self.states: list[dict] = []

    def load(self):
        return None

    def save(self, state: dict) -> None:
        self.states.append(copy.deepcopy(state))


@pytest.mark.parametrize("grouping", ["input", "output"])
def test_proximal_trial_reports_its_exact_zeros_and_their_free_removal(tiny, grouping):
    """Row figures checked against the dense network the trial saved: zeros counted with numpy,
    the network without them built by surgery and evaluated by hand."""
    from hgsearch.pruning import prune_model

    rec = _Recorder()
    cfg = {**tiny, "reg_solver": "proximal", "reg_grouping": grouping, "lam": 0.1,
           "prune_ratio": 0.0, "finetune_epochs": 0, "trial_id": f"prox-{grouping}"}
    row = run_trial(cfg, log=None, checkpoint=rec)
    state = next(s for s in rec.states if s["phase"] == "trained")
    dense = build_model("resnet20", 10, state["widths"])
    dense.load_state_dict(state["model"])
    sd = {k: v.numpy() for k, v in state["model"].items()}
    zero = []
    for b in range(9):
        w1, w2 = sd[f"blocks.{b}.conv1.weight"], sd[f"blocks.{b}.conv2.weight"]
        g, beta = sd[f"blocks.{b}.bn1.weight"], sd[f"blocks.{b}.bn1.bias"]
        zero.append([c for c in range(w1.shape[0]) if not w2[:, c].any()
                     or (not w1[c].any() and g[c] == 0 and beta[c] == 0)])
    count = sum(len(z) for z in zero)
    assert count > 0, "lam=0.1 must zero some filters even in a tiny trial"
    assert row["zero_filter_fraction"] == pytest.approx(count / 336)
    keep = [[c for c in range(16 * 2 ** (b // 3)) if c not in z] or [z[0]]
            for b, z in enumerate(zero)]
    data = load_dataset(make_config(cfg))
    full = plain_accuracy(dense, data.val_x, data.val_y, data.mean, data.std)
    free = plain_accuracy(prune_model(dense, keep), data.val_x, data.val_y, data.mean, data.std)
    assert full == pytest.approx(row["acc_dense"], abs=1e-6)
    assert free == pytest.approx(row["acc_zero_pruned"], abs=1e-6)
    assert free == full            # removing exactly zero filters changes nothing
