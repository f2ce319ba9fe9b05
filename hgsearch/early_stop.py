"""Early stopping of the dense phase: successive-halving rungs against the unregularized curve.

An HGSR training whose validation accuracy at a rung epoch is below ``early_stop_ratio`` times
the validation accuracy of the same config trained without the regularizer (the reference), at
the same epoch, is hopeless and stops there. The dense phase has one objective, so this is sound
in a multi-objective search too. The rule is pure (``decide``): it runs live at each rung while
a network trains and is replayed on a stored curve (``replay``), so a reused network ends the
trial exactly as a fresh training would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hgsearch.config import TrialConfig

Curve = Sequence[Mapping[str, Any]]


class Stopped(Exception):
    """The dense phase stopped at ``epoch`` (row status ``stopped``; ``reason`` its error)."""

    def __init__(self, epoch: int, reason: str) -> None:
        super().__init__(reason)
        self.epoch, self.reason = epoch, reason


def active(cfg: TrialConfig) -> bool:
    """Early stopping applies: asked for, and there is a regularizer to blame (never reg=none,
    lam=0, so never the baseline)."""
    return cfg.early_stop and cfg.regularized


def rung_epochs(epochs: int, rungs: int) -> list[int]:
    """round(epochs / 2**k) for k = rungs..1, each >= 1 and < epochs, ascending, no duplicates
    (160 epochs, 2 rungs: [40, 80]); geometric as in successive halving."""
    out: list[int] = []
    for k in range(rungs, 0, -1):
        e = round(epochs / 2 ** k)
        if 1 <= e < epochs and e not in out:
            out.append(e)
    return out


def val_at(curve: Curve, epoch: int) -> float | None:
    """The train-phase validation accuracy of ``curve`` at ``epoch``, None when not there."""
    for record in curve:
        if record.get("phase", "train") == "train" and record.get("epoch") == epoch:
            value = record.get("val_acc")
            return None if value is None or value != value else float(value)
    return None


def decide(curve: Curve, reference: Curve | None, cfg: TrialConfig) -> int | None:
    """The first rung epoch e where val_acc(e) < early_stop_ratio x reference val_acc(e), else
    None. Rungs that either curve has not reached, and an inactive config, never stop."""
    if not active(cfg) or not reference:
        return None
    return next((e for e in rung_epochs(cfg.epochs, cfg.early_stop_rungs)
                 if behind(curve, reference, cfg, e)), None)


def behind(curve: Curve, reference: Curve | None, cfg: TrialConfig, epoch: int) -> bool:
    """The rule at one rung: both curves reached ``epoch`` and ``curve`` is below the ratio."""
    mine, ref = val_at(curve, epoch), val_at(reference or (), epoch)
    return mine is not None and ref is not None and mine < cfg.early_stop_ratio * ref


def reason(curve: Curve, reference: Curve, cfg: TrialConfig, epoch: int) -> str:
    """The row's error text of a trial stopped at rung ``epoch``."""
    return (f"early stop at epoch {epoch}: val_acc {val_at(curve, epoch):.4f} < "
            f"early_stop_ratio {cfg.early_stop_ratio:g} x the unregularized "
            f"{val_at(reference, epoch):.4f}")


def reference_curve(store: Any, key: str, epoch: int, log: Callable[[str], None]
                    ) -> list[dict] | None:
    """The reference's curve in ``store`` (a DenseStore) once it reached ``epoch``: waits
    while it is being trained and not there yet; None (logged) when no reference exists nor
    is being trained, so the rung does not stop."""
    waited = False
    while True:
        curve = store.curve(key)
        if val_at(curve, epoch) is not None:
            return curve
        if store.meta(key) is not None or store.holder(key) is None:
            log(f"early stopping: no unregularized reference {key} at epoch {epoch} "
                "(none trained nor training): not stopping at this rung")
            return None
        if not waited:
            log(f"early stopping: waiting for the unregularized reference {key} to reach "
                f"epoch {epoch}")
            waited = True
        time.sleep(store.poll_s)


class Rungs:
    """One trial's rung checks; ``reference_at(e)`` gives the reference curve once it reached
    epoch e (it may wait for a reference still training), or None when there is none."""

    def __init__(self, cfg: TrialConfig, reference_at: Callable[[int], Curve | None]) -> None:
        self.cfg, self.reference_at = cfg, reference_at
        self.epochs = rung_epochs(cfg.epochs, cfg.early_stop_rungs) if active(cfg) else []

    def check(self, epoch: int, curve: Curve) -> str | None:
        """Live, after ``epoch``: why the training stops here, or None."""
        if epoch not in self.epochs:
            return None
        reference = self.reference_at(epoch)
        return reason(curve, reference, self.cfg, epoch) if behind(
            curve, reference, self.cfg, epoch) else None

    def replay(self, curve: Curve) -> Stopped | None:
        """Where a training with this stored curve would have stopped, as the live checks
        would have seen it (with a complete reference: ``decide``)."""
        for e in self.epochs:
            if val_at(curve, e) is None:
                break
            if why := self.check(e, curve):
                return Stopped(e, why)
        return None
