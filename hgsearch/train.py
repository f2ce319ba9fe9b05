"""Training and evaluation loops over device-resident data (SGD, cosine or step schedule)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from hgsearch.errors import UserError

if TYPE_CHECKING:
    from hgsearch.config import TrialConfig
    from hgsearch.runtime import Runtime

# How often (in steps) the loss is checked for NaN/inf between the end-of-epoch checks: a check
# synchronizes with the GPU, so not every step; often enough that a diverged run stops quickly.
DIVERGENCE_CHECK_EVERY = 25


class Diverged(Exception):
    """The training loss became NaN or infinite; the trial ends with status ``diverged``."""

    def __init__(self, message: str, epoch: int = 0) -> None:
        super().__init__(message)
        self.epoch = epoch      # the epoch it diverged in


def lr_factor(step: int, total: int, schedule: str, warmup: int = 0) -> float:
    """Multiplier of the peak learning rate at ``step`` of ``total``: a linear ramp over the first
    ``warmup`` steps ((step + 1) / warmup), then cosine to 0 or step decay over the rest."""
    if step < warmup:
        return (step + 1) / warmup
    total -= warmup
    if total <= 0:
        return 1.0
    progress = min((step - warmup) / total, 1.0)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "step":  # x0.1 at 50% and again at 75% (He et al. 2016's CIFAR schedule)
        return 1.0 if progress < 0.5 else 0.1 if progress < 0.75 else 0.01
    raise UserError(f"schedule={schedule!r}: allowed values are cosine, step")


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
             runtime: Runtime) -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy (fraction) over all batches, in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=runtime.device)
    correct = torch.zeros((), dtype=torch.int64, device=runtime.device)
    count = 0
    for x, y in batches:
        with runtime.autocast():
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
        count += len(y)
    model.train(was_training)
    if count == 0:
        return math.nan, math.nan
    return loss_sum.item() / count, correct.item() / count


@dataclass(frozen=True)
class SGDSettings:
    epochs: int
    lr: float                # peak learning rate
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    batch_size: int = 128
    warmup_epochs: int = 0   # linear ramp before the schedule (dense training only)


def sgd_settings(cfg: TrialConfig, epochs: int, lr: float, *, dense: bool = False
                 ) -> SGDSettings:
    """A trial's SGD recipe: ``cfg``'s momentum, Nesterov, weight decay, schedule, batch size;
    ``cfg.warmup_epochs`` for the ``dense`` training only (fine-tuning starts trained)."""
    return SGDSettings(epochs=epochs, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                       weight_decay=cfg.weight_decay, schedule=cfg.schedule,
                       batch_size=cfg.batch_size,
                       warmup_epochs=cfg.warmup_epochs if dense else 0)


def sgd_optimizer(model: nn.Module, settings: SGDSettings) -> torch.optim.SGD:
    """The optimizer ``train`` steps with (its learning rate set per step by the schedule)."""
    # Weight decay on every parameter, as the reference's plain SGD does (docs/method.md part 1).
    return torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                           weight_decay=settings.weight_decay,
                           nesterov=settings.nesterov and settings.momentum > 0)


def apply_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, *,
               penalty: Callable | None = None, after_step: Callable | None = None
               ) -> torch.Tensor:
    """One update as every training here takes it: the gradient of ``loss`` plus the penalty
    (the subgradient solver), the optimizer's step, then ``after_step`` (the proximal one);
    the loss with the penalty, detached."""
    total = loss + penalty(model) if penalty is not None else loss
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    if after_step is not None:
        after_step(model, optimizer)
    return total.detach()


def train(model: nn.Module, train_data, *, settings: SGDSettings, runtime: Runtime,
          generator: torch.Generator, penalty: Callable[[nn.Module], torch.Tensor] | None = None,
          evaluate_each_epoch: Callable[[], tuple[float, float]] | None = None,
          phase: str = "train", log: Callable[[str], None] | None = print,
          step_model: nn.Module | None = None, start_epoch: int = 1,
          optimizer_state: dict | None = None,
          on_epoch_end: Callable[[int, dict], None] | None = None,
          curve: list[dict] | None = None,
          after_step: Callable[[nn.Module, torch.optim.Optimizer], None] | None = None,
          ) -> list[dict]:
    """Train ``model`` in place with SGD; return one dict per epoch (the trial's curve).

    ``train_data`` is a ``hgsearch.data.DeviceData``; ``penalty(model)`` is added to the
    cross-entropy every step (the HGSR term, docs/method.md part 1). ``step_model`` (for example a
    ``torch.compile`` of ``model``) runs the forward when given. Raises ``Diverged`` on a NaN or
    infinite loss. To resume, pass ``start_epoch`` and the ``optimizer_state`` that
    ``on_epoch_end(epoch, optimizer_state)`` was given after the epoch before it. Each epoch's
    record is appended to ``curve`` (when given) before ``on_epoch_end`` runs.
    ``after_step(model, optimizer)`` runs after every SGD step (the proximal step of
    ``reg_solver=proximal``), at the step's learning rate ``optimizer.param_groups[0]["lr"]``.
    """
    forward = step_model if step_model is not None else model   # a compiled module has no bool
    optimizer = sgd_optimizer(model, settings)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    steps_per_epoch = max(len(train_data) // settings.batch_size, 1)
    total_steps = steps_per_epoch * settings.epochs
    warmup_steps = steps_per_epoch * settings.warmup_epochs
    step = steps_per_epoch * (start_epoch - 1)
    curve = [] if curve is None else curve
    new: list[dict] = []
    model.train()
    for epoch in range(start_epoch, settings.epochs + 1):
        start = time.perf_counter()
        loss_sum = torch.zeros((), dtype=torch.float64, device=runtime.device)
        correct = torch.zeros((), dtype=torch.int64, device=runtime.device)
        seen = 0
        for x, y in train_data.train_batches(settings.batch_size, generator=generator):
            for group in optimizer.param_groups:
                group["lr"] = settings.lr * lr_factor(step, total_steps, settings.schedule,
                                                       warmup_steps)
            with runtime.autocast():
                logits = forward(x)
                loss = F.cross_entropy(logits.float(), y)
            total = apply_step(model, optimizer, loss, penalty=penalty, after_step=after_step)
            loss_sum += loss.detach().double() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            step += 1
            if step % DIVERGENCE_CHECK_EVERY == 0:
                _check_finite(total, phase, epoch)
        _check_finite(loss_sum, phase, epoch)
        if penalty is not None:
            _check_finite(penalty(model).detach(), phase, epoch)
        if runtime.device.type == "cuda":
            torch.cuda.synchronize(runtime.device)
        seconds = time.perf_counter() - start
        val = evaluate_each_epoch() if evaluate_each_epoch else (math.nan, math.nan)
        record = _epoch_record(phase, epoch, optimizer.param_groups[0]["lr"], loss=loss_sum,
                               correct=correct, seen=seen, seconds=seconds, val=val)
        curve.append(record)
        new.append(record)
        if log:
            log(f"[{phase}] epoch {epoch}/{settings.epochs}  loss {record['train_loss']:.4f}  "
                f"train {100 * record['train_acc']:.1f}%  val {100 * record['val_acc']:.1f}%  "
                f"{record['images_per_s']:.0f} img/s  {seconds:.1f}s")
        if on_epoch_end is not None:
            on_epoch_end(epoch, optimizer.state_dict())
    return new


def _epoch_record(phase: str, epoch: int, lr: float, *, loss: torch.Tensor,
                  correct: torch.Tensor, seen: int, seconds: float,
                  val: tuple[float, float]) -> dict:
    """One epoch's row of the curve, from the epoch's summed loss and correct count."""
    return {
        "phase": phase, "epoch": epoch, "lr": lr,
        "train_loss": loss.item() / max(seen, 1), "train_acc": correct.item() / max(seen, 1),
        "val_loss": val[0], "val_acc": val[1],
        "images_per_s": seen / seconds if seconds > 0 else math.nan, "seconds": seconds,
    }


def _check_finite(value: torch.Tensor, phase: str, epoch: int) -> None:
    if not torch.isfinite(value).all():
        raise Diverged(f"loss became {value.item()} in {phase} epoch {epoch}", epoch)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, x: torch.Tensor, *, batch_size: int,
                   runtime: Runtime) -> None:
    """Re-estimate every BatchNorm's running mean and variance on images ``x``.

    Train-mode forwards without gradients, after pruning changed what each BatchNorm sees. The
    statistics are reset and then averaged over all of ``x`` with equal weight per batch
    (momentum None), so they describe the pruned network alone, not a blend with the old ones.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    was_training = model.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        for start in range(0, len(x), batch_size):
            with runtime.autocast():
                model(x[start:start + batch_size])
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        model.train(was_training)
