"""The benchmarks' trial recipe is the trial's own: the same SGD settings and the same penalty
as ``hgsearch.trial`` builds for the default keys (the GPU suite cannot import that module)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hgsearch.bench.workload import trial_recipe
from hgsearch.config import TrialConfig
from hgsearch.hgsr_hooks import hgsr_hooks
from hgsearch.models import build_model


@pytest.mark.parametrize("batch", [8, 128])
def test_trial_recipe_is_the_trials(batch):
    cfg = replace(TrialConfig(), batch_size=batch)
    settings, penalty = trial_recipe(batch)
    # the trial's keys, field by field (both sides call train.sgd_settings: this pins its fields)
    assert (settings.epochs, settings.lr, settings.momentum, settings.nesterov,
            settings.weight_decay, settings.schedule, settings.batch_size) == \
        (1, cfg.lr, cfg.momentum, cfg.nesterov, cfg.weight_decay, cfg.schedule, batch)
    model = build_model("resnet20", 10)
    trial_penalty, prox = hgsr_hooks(cfg, model)
    assert prox is None
    assert float(penalty(model).detach()) == float(trial_penalty(model).detach()) > 0
