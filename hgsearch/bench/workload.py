"""What the benchmarks train on: random device-resident images, a plain SGD step, a trial's recipe.

torch only (no pandas, Ray or the trial module), so that the GPU suite's training parts run
where only torch is installed (cluster/gpu_check.sh).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)   # CIFAR-10's, roughly: any will do


def random_data(n: int, runtime: Any, *, seed: int = 0) -> Any:
    """A DeviceData split of n random 32x32 uint8 images, 10 classes, on the runtime's device."""
    import torch

    from hgsearch.data import DeviceData

    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=gen)
    return DeviceData(x, y, mean=MEAN, std=STD, device=runtime.device,
                      channels_last=runtime.channels_last)


def plain_optimizer(model: Any) -> Any:
    """SGD at lr 0.01 with the trial's momentum and weight decay (SGDSettings' defaults)."""
    from hgsearch.train import SGDSettings, sgd_optimizer

    return sgd_optimizer(model, SGDSettings(epochs=1, lr=0.01))


def sgd_step(model: Any, optimizer: Any, x: Any, y: Any, runtime: Any,
             penalty: Callable[[Any], Any] | None = None) -> None:
    """One plain SGD step as a trial takes it: autocast forward, fp32 loss, backward, update."""
    import torch.nn.functional as F

    from hgsearch.train import apply_step

    with runtime.autocast():
        loss = F.cross_entropy(model(x).float(), y)
    apply_step(model, optimizer, loss, penalty=penalty)


def trial_recipe(batch: int, *, epochs: int = 1) -> tuple[Any, Callable[[Any], Any]]:
    """(SGDSettings, HGSR penalty) of a trial with the default keys (TrialConfig) at ``batch``.

    The settings come from ``hgsearch.train.sgd_settings``, as the trial's; the penalty is the
    one ``hgsearch.hgsr_hooks.hgsr_hooks`` gives for the default keys (tests/bench check it), built
    here since the trial module needs pandas.
    """
    from dataclasses import replace

    from hgsearch.config import TrialConfig
    from hgsearch.regularizers import Regularizer
    from hgsearch.train import sgd_settings

    cfg = replace(TrialConfig(), batch_size=batch)
    built: list[Regularizer] = []    # one per network, built at its first step as a trial's is

    def penalty(model: Any) -> Any:
        if not built or built[0].model is not model:
            built[:] = [Regularizer.from_config(cfg, model)]
        return built[0].penalty(model)

    return sgd_settings(cfg, epochs, cfg.lr), penalty


def penalty_text() -> str:
    """The default penalty's keys on one line (the report's settings)."""
    from hgsearch.config import TrialConfig

    c = TrialConfig()
    return (f"the trial's defaults: reg={c.reg} reg_levels={c.reg_levels} "
            f"reg_outer={c.reg_outer} reg_grouping={c.reg_grouping} lam={c.lam:g} mix={c.mix:g}")
