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

from hgsearch import __version__
from hgsearch.config import TrialConfig, make_config
from hgsearch.data import DeviceData, load_dataset
from hgsearch.errors import UserError
from hgsearch.metrics import count_macs, count_params, measure_latency
from hgsearch.models import build_model, save_model
from hgsearch.pruning import prune
from hgsearch.regularizers import hgsr_loss, zero_group_fraction
from hgsearch.results import empty_metrics, write_curve, write_row
from hgsearch.train import Diverged, Runtime, SGDSettings, evaluate, resolve_runtime, train

Log = Callable[[str], None]


def new_trial_id() -> str:
    """A sortable, collision-resistant id: UTC time plus random hex."""
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def versions() -> str:
    import numpy
    import torchvision
    return (f"hgsearch={__version__}, torch={torch.__version__}, "
            f"torchvision={torchvision.__version__}, numpy={numpy.__version__}, "
            f"python={platform.python_version()}")


def run_trial(config: TrialConfig | Mapping[str, Any], *, extra: Mapping[str, Any] | None = None,
              log: Log | None = print) -> dict[str, Any]:
    """Run one trial and write its row, curve and compact model under ``config.out_dir``.

    Returns the row. A NaN/inf loss gives status ``diverged`` (row written, no exception). Any
    other failure writes a row with status ``failed`` and re-raises, so a caller may retry; the
    retry's row replaces it. A UserError (bad key, missing dataset) is raised before anything is
    written.
    """
    cfg = config if isinstance(config, TrialConfig) else make_config(config)
    if not cfg.trial_id:
        cfg = cfg.replace(trial_id=new_trial_id())
    log = log or (lambda _msg: None)
    row: dict[str, Any] = {**cfg.to_dict(), **empty_metrics(), **dict(extra or {})}
    row.update(hostname=socket.gethostname(), started_at=_now(), versions=versions())
    curve: list[dict] = []
    start = time.perf_counter()
    runtime = resolve_runtime(cfg.device, cfg.precision, cfg.channels_last)
    row.update(device=str(runtime.device), device_name=_device_name(runtime.device))

    t0 = time.perf_counter()
    data = load_dataset(cfg)  # UserError for a bad folder: raised before anything is written
    row.update(seconds_data=time.perf_counter() - t0, num_classes=data.num_classes)
    try:
        _pipeline(cfg, data, runtime, row, curve, log)
        row["status"] = "ok"
    except Diverged as err:
        row.update(status="diverged", error=str(err))
        log(f"trial {cfg.trial_id} diverged: {err}")
    except UserError:
        raise
    except Exception as err:
        row.update(status="failed", error=f"{err.__class__.__name__}: {err}"[:2000])
        row["seconds_total"] = time.perf_counter() - start
        row["finished_at"] = _now()
        _write(cfg, row, curve)
        log(f"trial {cfg.trial_id} failed:\n{traceback.format_exc()}")
        raise
    row["seconds_total"] = time.perf_counter() - start
    row["finished_at"] = _now()
    _write(cfg, row, curve)
    return row


def _write(cfg: TrialConfig, row: dict[str, Any], curve: list[dict]) -> None:
    write_curve(cfg.out_dir, cfg.trial_id, curve)
    write_row(cfg.out_dir, row)  # last: a row on disk means the trial is fully recorded


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def _pipeline(cfg: TrialConfig, data, runtime: Runtime, row: dict[str, Any], curve: list[dict],
              log: Log) -> None:
    """The trial's phases; fills ``row`` and ``curve`` as it goes."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    dtype = torch.float32
    splits = {name: DeviceData(getattr(data, f"{name}_x"), getattr(data, f"{name}_y"),
                               mean=data.mean, std=data.std, device=runtime.device,
                               channels_last=runtime.channels_last, dtype=dtype)
              for name in ("train", "val", "test")}
    size = (data.image_size, data.image_size)

    def accuracy(model: torch.nn.Module, split: str) -> tuple[float, float]:
        return evaluate(model, splits[split].eval_batches(cfg.eval_batch_size), runtime)

    # --- 1. train with HGSR (METHOD.md part 1)
    model = runtime.prepare(build_model(cfg.arch, data.num_classes))
    step_model = torch.compile(model) if cfg.compile else None
    regularized = cfg.reg != "none" and cfg.lam > 0

    def penalty(m: torch.nn.Module) -> torch.Tensor:
        return hgsr_loss(m, reg=cfg.reg, levels=cfg.reg_levels, outer=cfg.reg_outer,
                         grouping=cfg.reg_grouping, lam=cfg.lam, mix=cfg.mix)

    log(f"trial {cfg.trial_id}: {cfg.arch} on {cfg.dataset} ({len(data.train_y)} train / "
        f"{len(data.val_y)} val / {len(data.test_y)} test images, {data.num_classes} classes) "
        f"on {runtime.device}; reg={cfg.reg if regularized else 'none'} lam={cfg.lam:g}")
    t0 = time.perf_counter()
    curve += train(model, splits["train"], settings=_sgd(cfg, cfg.epochs, cfg.lr), runtime=runtime,
                   generator=gen, penalty=penalty if regularized else None,
                   evaluate_each_epoch=lambda: accuracy(model, "val"), phase="train", log=log,
                   step_model=step_model)
    row["seconds_train"] = time.perf_counter() - t0
    row["acc_dense"] = curve[-1]["val_acc"]
    row["test_acc_dense"] = accuracy(model, "test")[1]
    row["zero_group_fraction"] = zero_group_fraction(model, grouping=cfg.reg_grouping,
                                                     tol=cfg.zero_tol)
    row["widths_dense"] = list(model.widths)
    row["params_dense"] = count_params(model)
    row["macs_dense"] = count_macs(model, size)

    # --- 2. score filters and prune (METHOD.md parts 2 and 3)
    t0 = time.perf_counter()
    if cfg.prune_ratio > 0:
        n = min(cfg.score_samples, len(splits["train"]))
        x, y = splits["train"].sample(n, generator=gen)
        compact, keep, _scores, note = prune(
            model, x, y, ratio=cfg.prune_ratio, target=cfg.prune_target, scope=cfg.prune_scope,
            steps=cfg.prune_steps, min_channels=cfg.min_channels, round_to=cfg.round_to,
            batch_size=cfg.eval_batch_size, input_size=size)
        compact = runtime.prepare(compact)
        row["prune_note"] = note or None
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

    # --- 3. fine-tune the compact network
    t0 = time.perf_counter()
    if cfg.finetune_epochs > 0:
        curve += train(compact, splits["train"], settings=_sgd(cfg, cfg.finetune_epochs,
                                                               cfg.finetune_lr),
                       runtime=runtime, generator=gen, phase="finetune", log=log,
                       evaluate_each_epoch=lambda: accuracy(compact, "val"))
    row["seconds_finetune"] = time.perf_counter() - t0
    row["val_loss_final"], row["acc_final"] = accuracy(compact, "val")
    row["test_acc_final"] = accuracy(compact, "test")[1]

    # --- 4. measure both networks as they would be served
    t0 = time.perf_counter()
    for name, net in (("dense", model), ("final", compact)):
        for tag, batch in (("b1", 1), ("bN", cfg.latency_batch)):
            seconds = measure_latency(net, input_size=size, batch_size=batch,
                                      device=runtime.device, repeats=cfg.latency_repeats,
                                      channels_last=runtime.channels_last,
                                      dtype=runtime.autocast_dtype)
            row[f"latency_{name}_{tag}_ms"] = 1000 * seconds
    row["seconds_measure"] = time.perf_counter() - t0
    save_model(compact, Path(cfg.out_dir) / "models" / f"{cfg.trial_id}.pt",
               extra={"trial_id": cfg.trial_id, "dataset": cfg.dataset,
                      "image_size": data.image_size, "mean": list(data.mean),
                      "std": list(data.std), "classes": list(data.classes)})
    log(f"trial {cfg.trial_id} done: val {100 * row['acc_final']:.2f}%  test "
        f"{100 * row['test_acc_final']:.2f}%  params x{row['params_ratio']:.3f}  "
        f"MACs x{row['macs_ratio']:.3f}")


def _sgd(cfg: TrialConfig, epochs: int, lr: float) -> SGDSettings:
    return SGDSettings(epochs=epochs, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                       weight_decay=cfg.weight_decay, schedule=cfg.schedule,
                       batch_size=cfg.batch_size)
