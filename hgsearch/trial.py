"""One trial: data -> train with HGSR -> score filters -> prune -> fine-tune -> measure -> row.

Nothing here knows about Ray: a trial runs the same from the CLI, a test, a notebook or a worker.
"""

from __future__ import annotations

import copy
import platform
import secrets
import socket
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from hgsearch.checkpoint import PHASES, Checkpointer
from hgsearch.config import TrialConfig, make_config
from hgsearch.data import DeviceData, load_dataset
from hgsearch.errors import UserError
from hgsearch.fileio import utc_now, versions_text
from hgsearch.metrics import (
    count_macs,
    count_params,
    measure_latency,
    zero_filter_fraction,
    zero_filters,
    zero_group_fraction,
)
from hgsearch.models import ResNet, build_model, save_model
from hgsearch.proximal import exact, proximal_step
from hgsearch.pruning import prune, prune_model
from hgsearch.regularizers import hgsr_loss
from hgsearch.results import empty_metrics, write_curve, write_row
from hgsearch.runtime import Runtime, resolve_runtime
from hgsearch.train import Diverged, SGDSettings, evaluate, recalibrate_bn, train

Log = Callable[[str], None]


def new_trial_id() -> str:
    """A sortable, collision-resistant id: UTC time plus random hex."""
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def run_trial(config: TrialConfig | Mapping[str, Any], *, extra: Mapping[str, Any] | None = None,
              log: Log | None = print, checkpoint: Checkpointer | None = None) -> dict[str, Any]:
    """Run one trial and write its row, curve and compact model under ``config.out_dir``.

    Returns the row. A NaN/inf loss gives status ``diverged`` (row written, no exception). Any
    other failure writes a row with status ``failed`` and re-raises, so a caller may retry; the
    retry's row replaces it. A UserError (bad key, missing dataset) is raised before anything is
    written. With a ``checkpoint``, the trial saves its state at phase boundaries and every
    ``checkpoint_every`` epochs, and a rerun resumes from the last state saved.
    """
    cfg = config if isinstance(config, TrialConfig) else make_config(config)
    if not cfg.trial_id:
        cfg = cfg.replace(trial_id=new_trial_id())
    log = log or (lambda _msg: None)
    row: dict[str, Any] = {**cfg.to_dict(), **empty_metrics(), **dict(extra or {})}
    row.update(hostname=socket.gethostname(), started_at=utc_now("milliseconds"),
               versions=versions_text())
    curve: list[dict] = []
    start = time.perf_counter()
    runtime = resolve_runtime(cfg.device, cfg.precision, cfg.channels_last)
    row.update(device=str(runtime.device), device_name=_device_name(runtime.device))

    t0 = time.perf_counter()
    data = load_dataset(cfg)  # UserError for a bad folder: raised before anything is written
    row.update(seconds_data=time.perf_counter() - t0, num_classes=data.num_classes)
    try:
        _pipeline(cfg, data, runtime, row, curve, log, checkpoint)
        row["status"] = "ok"
    except Diverged as err:
        row.update(status="diverged", error=str(err))
        log(f"trial {cfg.trial_id} diverged: {err}")
    except UserError:
        raise
    except Exception as err:
        row.update(status="failed", error=f"{err.__class__.__name__}: {err}"[:2000])
        row["seconds_total"] = time.perf_counter() - start
        row["finished_at"] = utc_now("milliseconds")
        _write(cfg, row, curve)
        log(f"trial {cfg.trial_id} failed:\n{traceback.format_exc()}")
        raise
    row["seconds_total"] = time.perf_counter() - start
    row["finished_at"] = utc_now("milliseconds")
    _write(cfg, row, curve)
    return row


def _write(cfg: TrialConfig, row: dict[str, Any], curve: list[dict]) -> None:
    write_curve(cfg.out_dir, cfg.trial_id, curve)
    write_row(cfg.out_dir, row)  # last: a row on disk means the trial is fully recorded


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


class _Resume:
    """What a trial restarted from a checkpoint may skip: completed phases and epochs."""

    def __init__(self, state: dict[str, Any] | None) -> None:
        self.state = state or {}
        self.phase = self.state.get("phase")

    def done(self, phase: str) -> bool:
        """True when ``phase`` was complete at the checkpoint."""
        return self.phase is not None and PHASES.index(self.phase) > PHASES.index(phase)

    def epoch_of(self, phase: str) -> tuple[int, dict | None]:
        """(first epoch to run, optimizer state) for a training phase."""
        if self.phase == phase:
            return self.state["epoch"] + 1, self.state["optimizer"]
        return 1, None


def _pipeline(cfg: TrialConfig, data, runtime: Runtime, row: dict[str, Any], curve: list[dict],
              log: Log, checkpoint: Checkpointer | None) -> None:
    """The trial's phases; fills ``row`` and ``curve`` as it goes, resuming from ``checkpoint``."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    resume = _Resume(checkpoint.load() if checkpoint else None)
    splits = {name: DeviceData(getattr(data, f"{name}_x"), getattr(data, f"{name}_y"),
                               mean=data.mean, std=data.std, device=runtime.device,
                               channels_last=runtime.channels_last)
              for name in ("train", "val", "test")}
    size = (data.image_size, data.image_size)
    model = runtime.prepare(build_model(cfg.arch, data.num_classes))
    # From the freshly initialized network, also when resuming: lam_scale=init needs it.
    penalty, prox = hgsr_hooks(cfg, model)
    compact: ResNet | None = None
    if resume.phase:
        # Figures of the completed phases come back; where and when this run is stays current.
        saved = resume.state["row"]
        row.update({k: v for k, v in saved.items() if row.get(k) is None})
        row["started_at"] = saved.get("started_at", row["started_at"])
        curve[:] = resume.state["curve"]
        gen.set_state(resume.state["generator"])
        net = build_model(cfg.arch, data.num_classes, resume.state["widths"])
        net.load_state_dict(resume.state["model"])
        if resume.done("trained"):
            model, compact = None, runtime.prepare(net)
        else:
            model = runtime.prepare(net)
        log(f"trial {cfg.trial_id}: resuming from its checkpoint ({resume.phase}, epoch "
            f"{resume.state['epoch']})")

    def save(phase: str, net: ResNet, epoch: int = 0, optimizer: dict | None = None) -> None:
        if checkpoint is None:
            return
        checkpoint.save({"phase": phase, "epoch": epoch, "optimizer": optimizer,
                         "widths": list(net.widths), "model": net.state_dict(),
                         "generator": gen.get_state(), "row": _plain(row), "curve": list(curve)})

    def every(phase: str, net: ResNet) -> Callable[[int, dict], None]:
        def on_epoch_end(epoch: int, optimizer: dict) -> None:
            if cfg.checkpoint_every and epoch % cfg.checkpoint_every == 0:
                save(phase, net, epoch, optimizer)
        return on_epoch_end

    def accuracy(net: torch.nn.Module, split: str) -> tuple[float, float]:
        return evaluate(net, splits[split].eval_batches(cfg.eval_batch_size), runtime)

    # --- 1. train with HGSR (METHOD.md part 1)
    regularized = cfg.reg != "none" and cfg.lam > 0
    if not resume.done("train"):

        log(f"trial {cfg.trial_id}: {cfg.arch} on {cfg.dataset} ({len(data.train_y)} train / "
            f"{len(data.val_y)} val / {len(data.test_y)} test images, {data.num_classes} "
            f"classes) on {runtime.device}; reg={cfg.reg if regularized else 'none'} "
            f"lam={cfg.lam:g} solver={cfg.reg_solver}")
        first, opt_state = resume.epoch_of("train")
        t0 = time.perf_counter()
        train(model, splits["train"], settings=_sgd(cfg, cfg.epochs, cfg.lr),
                       runtime=runtime, generator=gen,
                       penalty=penalty, after_step=prox,
                       evaluate_each_epoch=lambda: accuracy(model, "val"), phase="train",
                       log=log, step_model=torch.compile(model) if cfg.compile else None,
                       start_epoch=first, optimizer_state=opt_state,
                       on_epoch_end=every("train", model), curve=curve)
        row["seconds_train"] = (row["seconds_train"] or 0.0) + time.perf_counter() - t0
        row["acc_dense"] = curve[-1]["val_acc"]
        row["test_acc_dense"] = accuracy(model, "test")[1]
        row["zero_group_fraction"] = zero_group_fraction(model, grouping=cfg.reg_grouping,
                                                         tol=cfg.zero_tol)
        row["zero_filter_fraction"] = zero_filter_fraction(model)
        # What HGSR's exact zeros give for free: the network without them, by real surgery.
        free = [(~z).nonzero().flatten().tolist() or [0] for z in zero_filters(model)]
        row["acc_zero_pruned"] = accuracy(runtime.prepare(prune_model(model, free)), "val")[1]
        row["widths_dense"] = list(model.widths)
        row["params_dense"] = count_params(model)
        row["macs_dense"] = count_macs(model, size)
        _measure(cfg, model, "dense", size, runtime, row)
        save("trained", model)

    # --- 2. score filters and prune (METHOD.md parts 2 and 3)
    if not resume.done("trained"):
        t0 = time.perf_counter()
        if cfg.prune_ratio > 0:
            n = min(cfg.score_samples, len(splits["train"]))
            x, y = splits["train"].sample(n, generator=gen)   # training images, never val/test
            result = prune(model, x, y, ratio=cfg.prune_ratio, target=cfg.prune_target,
                           scope=cfg.prune_scope, steps=cfg.prune_steps,
                           min_channels=cfg.min_channels, round_to=cfg.round_to,
                           batch_size=cfg.eval_batch_size, input_size=size,
                           criterion=cfg.score_method, generator=gen,
                           after_round=_recovery(cfg, splits, runtime, gen, log, curve,
                                                 accuracy))
            compact = runtime.prepare(result.model)
            row["prune_note"] = result.note or None
        else:
            compact = copy.deepcopy(model)
        row["seconds_score"] = time.perf_counter() - t0
        row["kept_channels"] = list(compact.widths)
        row["acc_pruned"] = accuracy(compact, "val")[1]
        row["params_final"] = count_params(compact)
        row["macs_final"] = count_macs(compact, size)
        row["params_ratio"] = row["params_final"] / row["params_dense"]
        row["macs_ratio"] = row["macs_final"] / row["macs_dense"]
        log(f"pruned: params {row['params_dense']:,} -> {row['params_final']:,} "
            f"({row['params_ratio']:.3f}), MACs {row['macs_dense']:,} -> {row['macs_final']:,} "
            f"({row['macs_ratio']:.3f}); val {100 * row['acc_dense']:.1f}% -> "
            f"{100 * row['acc_pruned']:.1f}% before fine-tuning")
        del model  # the dense network is measured and no longer needed
        save("pruned", compact)

    # --- 3. fine-tune the compact network
    assert compact is not None
    first, opt_state = resume.epoch_of("finetune")
    t0 = time.perf_counter()
    if cfg.finetune_epochs > 0 and first <= cfg.finetune_epochs:
        train(compact, splits["train"],
                       settings=_sgd(cfg, cfg.finetune_epochs, cfg.finetune_lr),
                       runtime=runtime, generator=gen, phase="finetune", log=log,
                       evaluate_each_epoch=lambda: accuracy(compact, "val"),
                       start_epoch=first, optimizer_state=opt_state,
                       on_epoch_end=every("finetune", compact), curve=curve)
    row["seconds_finetune"] = (row["seconds_finetune"] or 0.0) + time.perf_counter() - t0
    row["val_loss_final"], row["acc_final"] = accuracy(compact, "val")
    row["test_acc_final"] = accuracy(compact, "test")[1]

    # --- 4. measure the compact network as it would be served, and keep it
    _measure(cfg, compact, "final", size, runtime, row)
    save_model(compact, Path(cfg.out_dir) / "models" / f"{cfg.trial_id}.pt",
               extra={"trial_id": cfg.trial_id, "dataset": cfg.dataset,
                      "image_size": data.image_size, "mean": list(data.mean),
                      "std": list(data.std), "classes": list(data.classes)})
    log(f"trial {cfg.trial_id} done: val {100 * row['acc_final']:.2f}%  test "
        f"{100 * row['test_acc_final']:.2f}%  params x{row['params_ratio']:.3f}  "
        f"MACs x{row['macs_ratio']:.3f}")


def hgsr_hooks(cfg: TrialConfig, model: ResNet) -> tuple[Callable | None, Callable | None]:
    """(penalty added to the loss, step after each SGD step) for ``train``; None where unused.

    ``model`` is the freshly initialized network (lam_scale=init divides by its penalty). An exact
    proximal operator replaces the penalty's gradient; a thresholding comes on top of it.
    """
    if cfg.reg == "none" or cfg.lam == 0:
        return None, None
    lam = _lam(cfg, model)
    opts = {"reg": cfg.reg, "levels": cfg.reg_levels, "outer": cfg.reg_outer,
            "grouping": cfg.reg_grouping, "lam": lam, "mix": cfg.mix}

    def penalty(m: torch.nn.Module) -> torch.Tensor:
        return hgsr_loss(m, **opts)

    def prox(m: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        proximal_step(m, optimizer, lr=optimizer.param_groups[0]["lr"], **opts)

    if cfg.reg_solver != "proximal":
        return penalty, None
    return (None if exact(cfg.reg, cfg.reg_levels) else penalty), prox


def _lam(cfg: TrialConfig, model: ResNet) -> float:
    """The penalty weight in use: lam, or under lam_scale=init lam / (penalty at init)."""
    if cfg.lam_scale != "init" or cfg.reg == "none" or cfg.lam == 0:
        return cfg.lam
    with torch.no_grad():
        at_init = float(hgsr_loss(model, reg=cfg.reg, levels=cfg.reg_levels,
                                  outer=cfg.reg_outer, grouping=cfg.reg_grouping, lam=1.0,
                                  mix=cfg.mix))
    return cfg.lam / at_init if at_init > 0 else cfg.lam


def _recovery(cfg: TrialConfig, splits: dict, runtime: Runtime, gen: torch.Generator, log: Log,
              curve: list[dict], accuracy: Callable) -> Callable[[ResNet, int], ResNet]:
    """After pruning round i: BatchNorm recalibration, then (between rounds) fine-tuning."""
    def after_round(net: ResNet, i: int) -> ResNet:
        net = runtime.prepare(net)
        if cfg.bn_recalibrate > 0:
            n = min(cfg.bn_recalibrate, len(splits["train"]))
            xr, _ = splits["train"].sample(n, generator=gen)   # training images
            recalibrate_bn(net, xr, batch_size=cfg.batch_size, runtime=runtime)
        if i < cfg.prune_steps and cfg.finetune_between > 0:
            train(net, splits["train"], settings=_sgd(cfg, cfg.finetune_between, cfg.finetune_lr),
                  runtime=runtime, generator=gen, phase=f"between{i}", log=log, curve=curve,
                  evaluate_each_epoch=lambda: accuracy(net, "val"))
        return net
    return after_round


def _measure(cfg: TrialConfig, net: ResNet, name: str, size: tuple[int, int], runtime: Runtime,
             row: dict[str, Any]) -> None:
    """Median forward latency at batch 1 and at latency_batch, in milliseconds."""
    t0 = time.perf_counter()
    for tag, batch in (("b1", 1), ("bN", cfg.latency_batch)):
        seconds = measure_latency(net, input_size=size, batch_size=batch, device=runtime.device,
                                  repeats=cfg.latency_repeats,
                                  channels_last=runtime.channels_last,
                                  dtype=runtime.autocast_dtype)
        row[f"latency_{name}_{tag}_ms"] = 1000 * seconds
    row["seconds_measure"] = (row["seconds_measure"] or 0.0) + time.perf_counter() - t0


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """The row with only types a weights_only checkpoint load accepts."""
    ok = (str, int, float, bool, type(None), list)
    return {k: v for k, v in row.items() if isinstance(v, ok)}


def _sgd(cfg: TrialConfig, epochs: int, lr: float) -> SGDSettings:
    return SGDSettings(epochs=epochs, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                       weight_decay=cfg.weight_decay, schedule=cfg.schedule,
                       batch_size=cfg.batch_size)
