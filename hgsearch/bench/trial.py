"""Benchmark ``trial``: one epoch of ``hgsearch.train.train`` with a trial's settings against the
same SGD steps in a minimal hand-written loop over ready-made batches."""

from __future__ import annotations

from typing import Any

from hgsearch.bench.harness import Benchmark, Scale, Target, compare, interleave, sync_for
from hgsearch.bench.workload import random_data, sgd_step, trial_recipe


def bench_trial(scale: Scale, runtime: Any) -> dict[str, Any]:
    """An epoch of ``hgsearch.train.train`` against a minimal loop doing the same steps."""
    import torch

    from hgsearch.config import TrialConfig
    from hgsearch.models import build_model
    from hgsearch.train import sgd_optimizer, train

    cfg = TrialConfig()   # a trial's defaults: SGD recipe and HGSR setting
    settings, penalty = trial_recipe(scale.batch)
    data = random_data(scale.epoch_steps * scale.batch, runtime)
    gen = torch.Generator().manual_seed(0)
    model = runtime.prepare(build_model(scale.arch, 10)).train()
    # the minimal loop's batches: ready-made, no augmentation, nothing but the step left
    batches = [(data.normalize(data.x[i:i + scale.batch]), data.y[i:i + scale.batch])
               for i in range(0, len(data), scale.batch)]

    def minimal() -> None:
        model.train()
        optimizer = sgd_optimizer(model, settings)   # at the peak rate: no schedule
        for x, y in batches:
            sgd_step(model, optimizer, x, y, runtime, penalty)

    def in_trial() -> None:
        train(model, data, settings=settings, runtime=runtime, generator=gen, penalty=penalty,
              log=None)

    t = interleave({"minimal": minimal, "train": in_trial}, rounds=scale.rounds,
                   sync=sync_for(runtime.device))
    figures = compare(t["train"], t["minimal"])
    figures["steps_per_epoch"] = len(batches)
    settings_out = {"arch": scale.arch, "batch": scale.batch, "steps": len(batches),
                    "reg": cfg.reg, "lam": cfg.lam, "lr": settings.lr,
                    "schedule": settings.schedule}
    return {"settings": settings_out, "figures": figures}


def _detail(f: dict[str, float]) -> str:
    return f"epoch {f['subject_s']:.3g} s vs minimal loop {f['reference_s']:.3g} s"


BENCHMARK = Benchmark("trial", Target("ratio", "<=", 1.10), bench_trial, _detail, """
    seconds of one epoch of hgsearch.train.train (DeviceData batches, lr schedule, loss and
    accuracy sums, divergence checks; HGSR penalty on) / the same SGD steps with the penalty in
    a minimal loop over ready-made batches""")
