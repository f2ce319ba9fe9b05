"""Learning-rate warmup (``warmup_epochs``): a linear ramp, then the schedule over the rest."""

from __future__ import annotations

import math

import pytest
import torch

from hgsearch.config import dense_keys, make_config
from hgsearch.errors import UserError
from hgsearch.results import load_curves
from hgsearch.runtime import resolve_runtime
from hgsearch.train import SGDSettings, lr_factor, sgd_settings, train
from hgsearch.trial import run_trial


def reference_lrs(total: int, warmup: int) -> list[float]:
    """Brute force: the ramp 1/w .. w/w, then cosine over the remaining steps, one by one."""
    ramp = [(i + 1) / warmup for i in range(warmup)]
    rest = total - warmup
    return ramp + [0.5 * (1 + math.cos(math.pi * i / rest)) for i in range(rest)]


@pytest.mark.parametrize("total,warmup", [(10, 0), (10, 1), (10, 3), (7, 6), (100, 25)])
def test_lr_factor_matches_the_brute_force(total, warmup):
    got = [lr_factor(s, total, "cosine", warmup) for s in range(total)]
    assert got == pytest.approx(reference_lrs(total, warmup), abs=1e-12)


def test_no_warmup_is_the_plain_schedule():
    for s in range(20):
        assert lr_factor(s, 20, "step", 0) == (1.0 if s < 10 else 0.1 if s < 15 else 0.01)


def test_step_decay_counts_from_the_end_of_the_warmup():
    # 4 warmup steps of 24: the decays fall at 50% and 75% of the other 20.
    assert [lr_factor(s, 24, "step", 4) for s in (3, 4, 13, 14, 18, 19)] == [
        1.0, 1.0, 1.0, 0.1, 0.1, 0.01]


class _ThreeBatches:
    """Training data of 12 images in batches of 4: 3 steps an epoch."""

    def __len__(self) -> int:
        return 12

    def train_batches(self, batch_size, generator=None):
        for _ in range(3):
            yield torch.randn(4, 4), torch.randint(0, 2, (4,))


def test_train_sets_the_ramp_step_by_step():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)

    seen: list[float] = []
    settings = SGDSettings(epochs=4, lr=0.2, batch_size=4, warmup_epochs=1)
    train(model, _ThreeBatches(), settings=settings, runtime=resolve_runtime("cpu"),
          generator=torch.Generator(),
          after_step=lambda m, opt: seen.append(opt.param_groups[0]["lr"]))
    assert seen == pytest.approx([0.2 * f for f in reference_lrs(12, 3)], abs=1e-12)


def test_a_resumed_training_goes_on_with_the_ramp_where_it_was():
    # Resuming at epoch 2 of a 2-epoch warmup: the second epoch's steps at the same rates.
    def rates(start_epoch: int) -> list[float]:
        seen: list[float] = []
        train(torch.nn.Linear(4, 2), _ThreeBatches(), runtime=resolve_runtime("cpu"),
              settings=SGDSettings(epochs=4, lr=0.2, batch_size=4, warmup_epochs=2),
              generator=torch.Generator(), start_epoch=start_epoch,
              after_step=lambda m, opt: seen.append(opt.param_groups[0]["lr"]))
        return seen

    whole = rates(1)
    assert whole == pytest.approx([0.2 * f for f in reference_lrs(12, 6)], abs=1e-12)
    assert rates(2) == whole[3:]


def test_only_the_dense_training_warms_up():
    cfg = make_config({"warmup_epochs": 2, "epochs": 10})
    assert sgd_settings(cfg, 10, 0.1, dense=True).warmup_epochs == 2
    assert sgd_settings(cfg, 3, 0.01).warmup_epochs == 0


@pytest.mark.slow   # tens of seconds: make test-slow (CI runs it)
def test_a_trial_warms_up_its_training_and_not_its_fine_tuning(tiny):
    # 270 training images in batches of 50: 5 steps an epoch. The curve's lr is the last step's.
    keys = {**tiny, "epochs": 2, "finetune_epochs": 1, "prune_ratio": 0.3}
    run_trial({**keys, "trial_id": "warm", "warmup_epochs": 1}, log=None)
    run_trial({**keys, "trial_id": "cold"}, log=None)
    curves = load_curves(tiny["out_dir"])
    lr = {(t, p, e): v for t, p, e, v in zip(curves.trial_id, curves.phase, curves.epoch,
                                              curves.lr)}
    assert lr["warm", "train", 1] == pytest.approx(0.1)            # the ramp's top, 5/5
    assert lr["cold", "train", 1] == pytest.approx(0.05 * (1 + math.cos(math.pi * 4 / 10)))
    assert lr["warm", "train", 2] == pytest.approx(0.05 * (1 + math.cos(math.pi * 4 / 5)))
    assert lr["warm", "finetune", 1] == pytest.approx(lr["cold", "finetune", 1])


def test_warmup_changes_the_dense_network_key():
    assert "warmup_epochs" in dense_keys()


def test_warmup_must_end_before_the_training_does():
    with pytest.raises(UserError) as err:
        make_config({"warmup_epochs": 5, "epochs": 5})
    assert err.value.problems == ["warmup_epochs=5: must be less than epochs=5"]
    make_config({"warmup_epochs": 4, "epochs": 5})


def test_the_command_refuses_a_warmup_as_long_as_the_training(tmp_path, capsys):
    from hgsearch.cli import main

    out = tmp_path / "results"
    assert main(["trial", "--set", "warmup_epochs=5", "epochs=5", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "hgsearch: error: warmup_epochs=5: must be less than epochs=5"]
    assert not out.exists()


def test_validate_finds_a_searched_epochs_too_short_for_the_warmup(tmp_path, capsys):
    from hgsearch.cli import main

    space = tmp_path / "s.yaml"
    space.write_text("fixed: {warmup_epochs: 4}\nsearch:\n  epochs: {int: [2, 10]}\n"
                     "baseline: {epochs: 10}\nobjectives: {acc_final: max}\nnum_samples: 2\n")
    assert main(["validate", str(space)]) == 2
    assert "search.epochs: at epochs=2: warmup_epochs=4: must be less than epochs=2" in (
        capsys.readouterr().err)
