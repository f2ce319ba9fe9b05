"""reg_solver=proximal on the synthetic data: a ResNet-20 that learns ends with
at least 20% of its prunable filters exactly zero, and removing them changes validation accuracy
by less than half a point before any fine-tuning (issue 12's acceptance).

Marked slow: zeros appear only after some 70-100 SGD steps and the network must learn meanwhile;
at 2,000 images x 4 epochs (30 s) it neither learned (27%) nor zeroed a filter, so this runs the
default data size for 8 epochs: 716 s on one thread under this machine's shared load
(about 16 s per epoch measured on an idle core, so some 2.5 minutes there)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hgsearch.config import make_config
from hgsearch.data import DeviceData, load_dataset
from hgsearch.models import load_model
from hgsearch.runtime import resolve_runtime
from hgsearch.train import evaluate
from hgsearch.trial import run_trial

pytestmark = pytest.mark.usefixtures("one_thread")

# Flat group_l12 (sum_g ||W_g||_1^(1/2), method.md part 1, col 1) without the L1 term: its slope
# grows as a group shrinks, so groups part into kept and exactly zero ones. Input groups: a zero
# group of conv2 leaves its inner channel unread. prune_ratio 0 and no fine-tuning: the saved
# model is the trained network itself.
SETTING = {"reg": "group_l12", "reg_levels": 1, "mix": 1.0, "lam": 1e-2,
           "reg_grouping": "input", "reg_solver": "proximal", "synthetic_train_size": 5000,
           "epochs": 8, "batch_size": 128, "prune_ratio": 0.0, "finetune_epochs": 0}


def _masked_accuracy(model: torch.nn.Module, dead: list[torch.Tensor], cfg) -> float:
    """Validation accuracy with the ``dead`` inner channels forced to 0 after bn1 (docs/method.md
    part 2's removal, by masking instead of surgery)."""
    hooks = [b.bn1.register_forward_hook(lambda _m, _i, out, keep=(~d).float().view(1, -1, 1, 1):
                                         out * keep)
             for b, d in zip(model.blocks, dead)]
    data = load_dataset(cfg)
    val = DeviceData(data.val_x, data.val_y, mean=data.mean, std=data.std,
                     device=torch.device("cpu"))
    try:
        return evaluate(model, val.eval_batches(500), resolve_runtime("cpu"))[1]
    finally:
        for h in hooks:
            h.remove()


@pytest.mark.slow
@pytest.mark.timeout(1800)   # 12 minutes were measured under a shared load
def test_proximal_trial_zeroes_a_fifth_of_the_filters_and_they_go_at_no_cost(tiny):
    keys = {**tiny, **SETTING, "trial_id": "sparse"}
    row = run_trial(keys, log=None)
    assert row["status"] == "ok"
    assert row["acc_dense"] >= 0.3                      # it learns: chance is 0.1
    assert row["zero_filter_fraction"] >= 0.2
    assert abs(row["acc_zero_pruned"] - row["acc_dense"]) < 0.005
    # Independently, from the saved weights: a filter is free when conv2 reads nothing from it.
    model = load_model(Path(keys["out_dir"]) / "models" / "sparse.pt")
    dead = [(b.conv2.weight == 0).flatten(2).all(2).all(0) for b in model.blocks]
    n_dead, n_all = sum(int(d.sum()) for d in dead), sum(len(d) for d in dead)
    assert n_dead / n_all == pytest.approx(row["zero_filter_fraction"], abs=1e-12)
    assert n_dead / n_all >= 0.2
    masked = _masked_accuracy(model, dead, make_config(keys))
    assert masked == pytest.approx(row["acc_dense"], abs=1e-12)
