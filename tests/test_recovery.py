"""Recovery after pruning (BatchNorm recalibration, fine-tuning between rounds), lam_scale, and
where a trial's scoring and recalibration images come from."""

from __future__ import annotations

import pytest
import torch

import hgsearch.phases as trial_phases
from hgsearch.config import make_config
from hgsearch.data import DeviceData, load_dataset
from hgsearch.hgsr_hooks import hgsr_hooks
from hgsearch.models import build_model
from hgsearch.pruning import CRITERIA
from hgsearch.regularizers import hgsr_loss
from hgsearch.results import load_curves
from hgsearch.runtime import resolve_runtime
from hgsearch.train import recalibrate_bn
from hgsearch.trial import run_trial

pytestmark = pytest.mark.usefixtures("one_thread")


def test_recalibration_gives_the_statistics_of_the_images_alone():
    bn = torch.nn.BatchNorm2d(3, momentum=0.3)
    bn.running_mean.fill_(5.0)
    bn.running_var.fill_(7.0)
    model = torch.nn.Sequential(bn).eval()
    x = torch.randn(40, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 + 1
    recalibrate_bn(model, x, batch_size=10, runtime=resolve_runtime("cpu"))
    batches = x.split(10)
    mean = torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0)
    var = torch.stack([b.transpose(0, 1).flatten(1).var(1, unbiased=True) for b in batches]).mean(0)
    assert torch.allclose(bn.running_mean, mean, atol=1e-6)
    assert torch.allclose(bn.running_var, var, atol=1e-5)
    assert bn.momentum == 0.3 and not model.training      # both restored


def _images(split: DeviceData) -> set[bytes]:
    return {row.numpy().tobytes() for row, _ in zip(*next(split.eval_batches(len(split))))}


def _split_images(cfg: dict) -> dict[str, set[bytes]]:
    data = load_dataset(make_config(cfg))
    return {name: _images(DeviceData(getattr(data, f"{name}_x"), getattr(data, f"{name}_y"),
                                     mean=data.mean, std=data.std, device="cpu"))
            for name in ("train", "val", "test")}


def test_scoring_and_recalibration_draw_only_training_images(tiny, monkeypatch):
    seen: dict[str, list[torch.Tensor]] = {"score": [], "recal": []}
    real_crit, real_recal = CRITERIA["l1_norm"], trial_phases.recalibrate_bn

    def spy_criterion(model, x, y, **kw):
        seen["score"].append(x.detach().clone())
        return real_crit(model, x, y, **kw)

    def spy_recal(model, x, **kw):
        seen["recal"].append(x.detach().clone())
        return real_recal(model, x, **kw)

    monkeypatch.setitem(CRITERIA, "l1_norm", spy_criterion)
    monkeypatch.setattr(trial_phases, "recalibrate_bn", spy_recal)
    cfg = {**tiny, "score_method": "l1_norm", "bn_recalibrate": 40, "prune_steps": 2,
           "finetune_epochs": 0}
    row = run_trial(cfg, log=None)
    assert row["status"] == "ok"
    assert len(seen["score"]) == 2 and len(seen["recal"]) == 2     # one per round
    images = _split_images(cfg)
    for kind, tensors in seen.items():
        for x in tensors:
            rows = {r.numpy().tobytes() for r in x}
            assert len(rows) == len(x), kind
            assert rows <= images["train"], f"{kind} used images outside the training split"
            assert not rows & (images["val"] | images["test"]), kind


@pytest.mark.slow   # tens of seconds: make test-slow (CI runs it)
def test_finetuning_between_rounds_is_on_the_curve(tiny):
    cfg = {**tiny, "trial_id": "between", "prune_steps": 3, "finetune_between": 1,
           "finetune_epochs": 1, "bn_recalibrate": 32}
    row = run_trial(cfg, log=None)
    assert row["status"] == "ok"
    phases = list(load_curves(tiny["out_dir"]).phase)
    assert phases == ["train", "between1", "between2", "finetune"]


@pytest.mark.parametrize("arch", ["resnet20", "resnet32"])
def test_lam_scale_init_makes_the_initial_penalty_lam(arch):
    cfg = make_config({"arch": arch, "lam": 0.7, "lam_scale": "init", "reg": "group_l12"})
    torch.manual_seed(0)
    model = build_model(arch, 10)
    penalty, prox = hgsr_hooks(cfg, model)
    assert prox is None
    assert penalty(model).item() == pytest.approx(0.7, rel=1e-6)
    raw = hgsr_loss(model, reg="group_l12", levels=2, outer="square", grouping="input",
                    lam=0.7, mix=0.5).item()
    assert raw > 1e3          # what lam_scale=none would give: a different scale per network


def test_exact_proximal_families_leave_the_penalty_out_of_the_loss():
    model = build_model("resnet20", 10)
    penalty, prox = hgsr_hooks(make_config({"reg": "group_lasso", "reg_levels": 1,
                                            "reg_solver": "proximal"}), model)
    assert penalty is None and prox is not None
    penalty, prox = hgsr_hooks(make_config({"reg_solver": "proximal"}), model)
    assert penalty is not None and prox is not None    # group_l12: thresholding on top
    assert hgsr_hooks(make_config({"reg": "none"}), model) == (None, None)
