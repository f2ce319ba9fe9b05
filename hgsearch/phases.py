"""A trial's phases: train with HGSR -> score filters -> prune -> fine-tune -> measure.

``run_phases`` runs them in order, each a function: ``train_dense`` (docs/method.md part 1),
``prune_dense`` (scoring, selection and surgery, parts 2 and 3, in ``prune_steps`` rounds),
``finetune`` and ``finish`` (latency, the model file); they fill the trial's row and curve.
``_resume`` is the one place a checkpoint is read: it restores the row, curve and generator and
says which phase a restarted trial begins at. ``hgsearch.trial.run_trial`` records the outcome.
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from hgsearch.checkpoint import PHASES, Checkpointer
from hgsearch.config import TrialConfig, image_size_problem
from hgsearch.data.images import eval_resize
from hgsearch.dense_store import DenseStore
from hgsearch.errors import UserError
from hgsearch.hgsr_hooks import hgsr_hooks
from hgsearch.metrics import (
    count_macs,
    count_params,
    measure_latency,
    measure_latency_pair,
    nonzero_keep,
    zero_filter_fraction,
    zero_group_fraction,
)
from hgsearch.models import PrunableNet, build_model, default_widths, save_model
from hgsearch.models.weights import UserWeights, initial_model
from hgsearch.pruning import prune, prune_model
from hgsearch.results_layout import ResultsFolder
from hgsearch.runtime import Runtime
from hgsearch.score_cache import ScoreCache, score_images
from hgsearch.shared_dense import SharedDense
from hgsearch.train import evaluate, recalibrate_bn, sgd_settings, train
from hgsearch.widths import trial_widths

Log = Callable[[str], None]


class _Trial:
    """What every phase of one trial shares: config, data on the device, row, curve, generator."""

    def __init__(self, cfg: TrialConfig, data: Any, runtime: Runtime, row: dict[str, Any],
                 curve: list[dict], log: Log, checkpoint: Checkpointer | None,
                 store: DenseStore | None) -> None:
        self.cfg, self.data, self.runtime, self.log = cfg, data, runtime, log
        self.row, self.curve, self.checkpoint = row, curve, checkpoint
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.splits = data.device_splits(runtime)   # in memory or streamed: one interface
        self.size = (data.image_size, data.image_size)
        self.shared = SharedDense(store, cfg, data, runtime, log)
        n = len(self.splits["train"])   # an epoch trains on n images less the partial batch
        self.epoch_images = n - n % cfg.batch_size
        self.dense: PrunableNet | None = None   # kept until the end: timed beside the final net
        # (loss, top-1) of the compact net on val as pruned; its final figures when nothing
        # fine-tunes it (None after a resume: measured again then)
        self.pruned_val: tuple[float, float] | None = None

    def accuracy(self, net: torch.nn.Module, split: str) -> tuple[float, float]:
        """(mean cross-entropy, top-1) of ``net`` on ``split``."""
        return evaluate(net, self.splits[split].eval_batches(self.cfg.eval_batch_size),
                        self.runtime)

    def save(self, phase: str, net: PrunableNet, epoch: int = 0,
             optimizer: dict | None = None) -> None:
        """Checkpoint the trial as it stands after ``phase`` (checkpoint.PHASES)."""
        if self.checkpoint is None:
            return
        self.checkpoint.save({"phase": phase, "epoch": epoch, "optimizer": optimizer,
                              "widths": list(net.widths), "model": net.state_dict(),
                              "generator": self.gen.get_state(), "row": _plain(self.row),
                              "curve": list(self.curve)})

    def every(self, phase: str, net: PrunableNet) -> Callable[[int, dict], None]:
        """``train``'s on_epoch_end: a checkpoint every ``checkpoint_every`` epochs."""
        def on_epoch_end(epoch: int, optimizer: dict) -> None:
            if self.cfg.checkpoint_every and epoch % self.cfg.checkpoint_every == 0:
                self.save(phase, net, epoch, optimizer)
        return on_epoch_end


class _Start(NamedTuple):
    """Where a trial (re)starts: the phase, its network(s), and a training phase's epoch."""

    phase: str                  # train | prune | finetune
    model: PrunableNet | None   # the dense network, until pruning
    compact: PrunableNet | None  # the pruned network, from pruning on
    first_epoch: int = 1
    optimizer: dict | None = None


def run_phases(cfg: TrialConfig, data: Any, runtime: Runtime, row: dict[str, Any],
              curve: list[dict], log: Log, checkpoint: Checkpointer | None,
              store: DenseStore | None, *, weights: UserWeights | None = None) -> None:
    """The trial's phases in order; fills ``row`` and ``curve``, resuming from ``checkpoint``.
    ``weights``: the trial's ``init_weights``, read and checked already."""
    torch.manual_seed(cfg.seed)
    if problem := image_size_problem(cfg.arch, data.image_size):   # every dataset's size
        raise UserError(problem)
    trial = _Trial(cfg, data, runtime, row, curve, log, checkpoint, store)
    model = runtime.prepare(_initial(cfg, data, row, log, weights))
    start = _resume(trial, checkpoint.load() if checkpoint else None, model)
    # From the freshly initialized network, also when resuming: lam_scale=init needs it. They
    # act on the network trained (on resume, the checkpoint's).
    penalty, prox = hgsr_hooks(cfg, model, trained=start.model)
    row.update({k: row[k] or 0 for k in ("images_train", "images_finetune", "images_score")})
    compact = start.compact
    trial.dense = start.model   # timed beside the compact net at the end (_measure); held here
    if start.phase == "train":
        train_dense(trial, start.model, penalty, prox, start.first_epoch, start.optimizer)
    if compact is None:
        compact = prune_dense(trial, start.model)
    again = start.phase == "finetune"
    finetune(trial, compact, start.first_epoch if again else 1, start.optimizer if again else None)
    finish(trial, compact)


def _initial(cfg: TrialConfig, data: Any, row: dict[str, Any], log: Log,
             weights: UserWeights | None) -> PrunableNet:
    """The network training starts from: freshly initialized, or the user's ``init_weights``
    (UserError, before anything is written, for a file that does not fit)."""
    if not cfg.init_weights:   # widths / width_scale: a thinner network (hgsearch/widths.py)
        widths = trial_widths(default_widths(cfg.arch), cfg.widths, cfg.width_scale)
        return build_model(cfg.arch, data.num_classes, widths)
    given = initial_model(weights or cfg.init_weights, cfg.arch, data.num_classes)
    row.update(init_weights_sha256=given.sha256, init_weights_note=given.note or None)
    log(f"trial {cfg.trial_id}: {cfg.arch} from {cfg.init_weights} (sha256 "
        f"{given.sha256[:12]})" + (f"; {given.note}" if given.note else ""))
    return given.model


def _resume(trial: _Trial, state: dict[str, Any] | None, fresh: PrunableNet) -> _Start:
    """The one place a checkpoint is read: restore its row, curve and generator, and say
    where the trial goes on (a state saved in phase p has the phases before p complete)."""
    if not state or not state.get("phase"):
        return _Start("train", fresh, None)
    phase = state["phase"]
    if phase not in PHASES:
        raise ValueError(f"checkpoint phase {phase!r}: expected one of {', '.join(PHASES)}")
    # Figures of the completed phases come back; where and when this run is stays current.
    saved, row = state["row"], trial.row
    row.update({k: v for k, v in saved.items() if row.get(k) is None})
    row["started_at"] = saved.get("started_at", row["started_at"])
    trial.curve[:] = state["curve"]
    trial.gen.set_state(state["generator"])
    net = build_model(trial.cfg.arch, trial.data.num_classes, state["widths"])
    net.load_state_dict(state["model"])
    net = trial.runtime.prepare(net)
    trial.log(f"trial {trial.cfg.trial_id}: resuming from its checkpoint ({phase}, epoch "
              f"{state['epoch']})")
    after = (state["epoch"] + 1, state["optimizer"])   # the epoch after the one saved
    if phase == "train":
        return _Start("train", net, None, *after)
    if phase == "trained":
        return _Start("prune", net, None)
    if phase == "pruned":
        return _Start("finetune", None, net)
    return _Start("finetune", None, net, *after)


def train_dense(trial: _Trial, model: PrunableNet, penalty: Callable | None, prox: Callable | None,
                first: int, opt_state: dict | None) -> None:
    """Phase 1 (docs/method.md part 1): train the dense network with HGSR, then measure it."""
    cfg, data, row = trial.cfg, trial.data, trial.row
    trial.log(f"trial {cfg.trial_id}: {cfg.arch} on {cfg.dataset} ({len(data.train_y)} train / "
              f"{len(data.val_y)} val / {len(data.test_y)} test images, {data.num_classes} "
              f"classes) on {trial.runtime.device}; reg={cfg.reg if cfg.regularized else 'none'} "
              f"lam={cfg.lam:g} solver={cfg.reg_solver}")
    t0 = time.perf_counter()
    if cfg.init_weights and first == 1 and row.get("acc_init") is None \
            and not row.get("init_weights_note"):
        # The network as given, before any training (a replaced classifier has no such figure).
        row["acc_init"] = trial.accuracy(model, "val")[1]
        row["test_acc_init"] = trial.accuracy(model, "test")[1]
    if cfg.skip_training:    # init_weights only: the given network, evaluated as it is
        given = row.get("acc_init") is not None     # measured just above: not twice
        _measure_dense(trial, model,
                       row["acc_init"] if given else trial.accuracy(model, "val")[1],
                       test_acc=row["test_acc_init"] if given else None)
        return
    run = functools.partial(
        train, model, trial.splits["train"],
        settings=sgd_settings(cfg, cfg.epochs, cfg.lr, dense=True),
        runtime=trial.runtime, generator=trial.gen, penalty=penalty, after_step=prox,
        evaluate_each_epoch=lambda: trial.accuracy(model, "val"), phase="train", log=trial.log,
        step_model=torch.compile(model) if cfg.compile else None, curve=trial.curve)
    # The one place the store is asked; then the phase goes on alike, trained here or reused.
    trial.shared.run(run, model=model, gen=trial.gen, curve=trial.curve, row=row, first=first,
                     opt_state=opt_state, every=trial.every("train", model),
                     epoch_images=trial.epoch_images)
    row["seconds_train"] = (row["seconds_train"] or 0.0) + time.perf_counter() - t0
    _measure_dense(trial, model, trial.curve[-1]["val_acc"])


def _measure_dense(trial: _Trial, model: PrunableNet, val_acc: float,
                   test_acc: float | None = None) -> None:
    """The dense network's figures in the row, then the phase's checkpoint."""
    cfg, row = trial.cfg, trial.row
    row["acc_dense"] = val_acc
    row["test_acc_dense"] = trial.accuracy(model, "test")[1] if test_acc is None else test_acc
    row["zero_group_fraction"] = zero_group_fraction(model, grouping=cfg.reg_grouping,
                                                     tol=cfg.zero_tol)
    row["zero_filter_fraction"] = zero_filter_fraction(model)
    # What HGSR's exact zeros give for free: the network without them, by real surgery.
    free = trial.runtime.prepare(prune_model(model, nonzero_keep(model)))
    row["acc_zero_pruned"] = trial.accuracy(free, "val")[1]
    row["widths_dense"] = list(model.widths)
    row["params_dense"] = count_params(model)
    row["macs_dense"] = count_macs(model, trial.size)
    trial.save("trained", model)


def prune_dense(trial: _Trial, model: PrunableNet) -> PrunableNet:
    """Phases 2 and 3 (docs/method.md parts 2, 3): score the filters on training images and remove
    the least needed, ``prune_steps`` rounds of score -> select -> surgery; the compact net."""
    cfg, row, train_split = trial.cfg, trial.row, trial.splits["train"]
    t0 = time.perf_counter()
    if cfg.prune_ratio > 0:
        n = min(cfg.score_samples, len(train_split))
        x, y = train_split.sample(n, generator=trial.gen)   # training images, never val/test
        score = ScoreCache.of(trial.shared, cfg, trial.log)   # one-shot: once per network
        # "[score]" names the phase the sweep console shows (hgsearch/search/trial_status.py)
        trial.log(f"[score] scoring filters ({cfg.score_method}) on {n} training images, "
                  f"{cfg.prune_steps} round(s) to remove {cfg.prune_ratio:g} of the "
                  f"{cfg.prune_target}")
        result = prune(model, x, y, ratio=cfg.prune_ratio, target=cfg.prune_target,
                       scope=cfg.prune_scope, steps=cfg.prune_steps,
                       min_channels=cfg.min_channels, round_to=cfg.round_to,
                       batch_size=cfg.eval_batch_size, input_size=trial.size,
                       criterion=score, generator=trial.gen, after_round=_recovery(trial))
        row["scores_reused"] = score.reused      # then its images were not forwarded here
        row["images_score"] += 0 if score.reused else score_images(cfg, model, n)
        compact = trial.runtime.prepare(result.model)
        row["prune_note"] = result.note or None
    else:
        compact = copy.deepcopy(model)
    row["seconds_score"] = time.perf_counter() - t0
    row["kept_channels"] = list(compact.widths)
    trial.pruned_val = trial.accuracy(compact, "val")
    row["acc_pruned"] = trial.pruned_val[1]
    row["params_final"] = count_params(compact)
    row["macs_final"] = count_macs(compact, trial.size)
    row["params_ratio"] = row["params_final"] / row["params_dense"]
    row["macs_ratio"] = row["macs_final"] / row["macs_dense"]
    trial.log(f"pruned: params {row['params_dense']:,} -> {row['params_final']:,} "
              f"({row['params_ratio']:.3f}), MACs {row['macs_dense']:,} -> "
              f"{row['macs_final']:,} ({row['macs_ratio']:.3f}); val "
              f"{100 * row['acc_dense']:.1f}% -> {100 * row['acc_pruned']:.1f}% before "
              "fine-tuning")
    trial.save("pruned", compact)
    return compact


def finetune(trial: _Trial, compact: PrunableNet, first: int, opt_state: dict | None) -> None:
    """Phase 4: fine-tune the compact network (no regularizer), then its final accuracy."""
    cfg, row = trial.cfg, trial.row
    t0 = time.perf_counter()
    if cfg.finetune_epochs > 0 and first <= cfg.finetune_epochs:
        row["images_finetune"] += (cfg.finetune_epochs - first + 1) * trial.epoch_images
        train(compact, trial.splits["train"],
              settings=sgd_settings(cfg, cfg.finetune_epochs, cfg.finetune_lr),
              runtime=trial.runtime, generator=trial.gen, phase="finetune", log=trial.log,
              evaluate_each_epoch=lambda: trial.accuracy(compact, "val"),
              start_epoch=first, optimizer_state=opt_state,
              on_epoch_end=trial.every("finetune", compact), curve=trial.curve)
    row["seconds_finetune"] = (row["seconds_finetune"] or 0.0) + time.perf_counter() - t0
    unchanged = cfg.finetune_epochs == 0 and trial.pruned_val is not None
    row["val_loss_final"], row["acc_final"] = (trial.pruned_val if unchanged
                                               else trial.accuracy(compact, "val"))
    row["test_acc_final"] = trial.accuracy(compact, "test")[1]


def finish(trial: _Trial, compact: PrunableNet) -> None:
    """Measure the compact network as it would be served, and keep it."""
    cfg, data, row = trial.cfg, trial.data, trial.row
    _measure(trial, compact)
    save_model(compact, ResultsFolder(cfg.out_dir).model(cfg.trial_id),
               extra={"trial_id": cfg.trial_id, "dataset": cfg.dataset,
                      "image_size": data.image_size,
                      "resize_side": eval_resize(data.image_size, cfg.dataset),
                      "mean": list(data.mean),
                      "std": list(data.std), "classes": list(data.classes)})
    trial.log(f"trial {cfg.trial_id} done: val {100 * row['acc_final']:.2f}%  test "
              f"{100 * row['test_acc_final']:.2f}%  params x{row['params_ratio']:.3f}  "
              f"MACs x{row['macs_ratio']:.3f}")


def _recovery(trial: _Trial) -> Callable[[PrunableNet, int], PrunableNet]:
    """After pruning round i: BatchNorm recalibration, then (between rounds) fine-tuning."""
    cfg, runtime, train_split = trial.cfg, trial.runtime, trial.splits["train"]

    def after_round(net: PrunableNet, i: int) -> PrunableNet:
        net, row = runtime.prepare(net), trial.row
        if cfg.bn_recalibrate > 0:
            n = min(cfg.bn_recalibrate, len(train_split))
            xr, _ = train_split.sample(n, generator=trial.gen)   # training images
            recalibrate_bn(net, xr, batch_size=cfg.batch_size, runtime=runtime)
            row["images_score"] += n     # forwards of the pruning phase
        if i < cfg.prune_steps:
            row["images_score"] += score_images(cfg, net, len(train_split))   # next round
        if i < cfg.prune_steps and cfg.finetune_between > 0:
            row["images_finetune"] += cfg.finetune_between * trial.epoch_images
            between = sgd_settings(cfg, cfg.finetune_between, cfg.finetune_lr)
            train(net, train_split, settings=between,
                  runtime=runtime, generator=trial.gen, phase=f"between{i}", log=trial.log,
                  curve=trial.curve, evaluate_each_epoch=lambda: trial.accuracy(net, "val"))
        return net
    return after_round


def _measure(trial: _Trial, compact: PrunableNet) -> None:
    """Forward latency at batch 1 and at latency_batch, in milliseconds: median and IQR of the
    dense and the compact network timed interleaved (``measure_latency_pair``), and whether
    their difference exceeds the spread. A trial resumed after pruning no longer has its
    dense network: the compact one is timed alone and the dense columns stay null."""
    cfg, runtime, row = trial.cfg, trial.runtime, trial.row
    t0 = time.perf_counter()
    opts = {"input_size": trial.size, "device": runtime.device, "repeats": cfg.latency_repeats,
            "channels_last": runtime.channels_last, "dtype": runtime.autocast_dtype}
    trial.log(f"[latency] timing the {'compact' if trial.dense is None else 'dense and compact'} "
              f"network on {runtime.device}: batch 1 and {cfg.latency_batch}, "
              f"{cfg.latency_repeats} forwards each")
    for tag, batch in (("b1", 1), ("bN", cfg.latency_batch)):
        if trial.dense is None:
            seconds = measure_latency(compact, batch_size=batch, **opts)
            row[f"latency_final_{tag}_ms"] = 1000 * seconds
            continue
        pair = measure_latency_pair(trial.dense, compact, batch_size=batch, **opts)
        for name, timing in (("dense", pair.dense), ("final", pair.pruned)):
            row[f"latency_{name}_{tag}_ms"] = 1000 * timing.median
            row[f"latency_{name}_{tag}_iqr_ms"] = 1000 * timing.iqr
        row[f"latency_{tag}_significant"] = pair.significant
        verdict = {True: "", False: " (within the spread: no speed-up shown)",
                   None: ""}[pair.significant]
        trial.log(f"latency batch {batch}: dense {1000 * pair.dense.median:.3g} ms, compact "
                  f"{1000 * pair.pruned.median:.3g} ms, timed together{verdict}")
    if trial.dense is None:
        trial.log(f"trial {cfg.trial_id}: resumed after pruning, so its dense network was "
                  "not timed beside the compact one (latency_dense_* null)")
    row["seconds_measure"] = (row["seconds_measure"] or 0.0) + time.perf_counter() - t0


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """The row with only types a weights_only checkpoint load accepts."""
    ok = (str, int, float, bool, type(None), list)
    return {k: v for k, v in row.items() if isinstance(v, ok)}
