"""Early stopping of the dense phase: successive-halving rungs against the unregularized curve.

An HGSR training whose validation accuracy at a rung epoch is below ``early_stop_ratio`` times
the validation accuracy of the same config trained without the regularizer (the reference), at
the same epoch, is hopeless and stops there. The dense phase has one objective, so this is sound
in a multi-objective search too. The rule is pure (``decide``): it runs live at each rung while
a network trains and is replayed on a stored curve (``replay``), so a reused network ends the
trial exactly as a fresh training would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hgsearch.config import TrialConfig

Curve = Sequence[Mapping[str, Any]]


class Stopped(Exception):
    """The dense phase stopped at ``epoch`` (row status ``stopped``; ``reason`` its error).

    ``curve``: the train-phase curve the trial ends with, when it came from a stored entry.
    """

    def __init__(self, epoch: int, reason: str, *, curve: list[dict] | None = None) -> None:
        super().__init__(reason)
        self.epoch, self.reason, self.curve = epoch, reason, curve


def active(cfg: TrialConfig) -> bool:
    """Early stopping applies: asked for, and there is a regularizer to blame (never reg=none,
    lam=0, so never the baseline)."""
    return cfg.early_stop and cfg.reg != "none" and cfg.lam > 0


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


def replay(curve: Curve, reference_at: Callable[[int], Curve | None],
           cfg: TrialConfig) -> tuple[int, str] | None:
    """Where a training whose curve is ``curve`` would have stopped: (epoch, reason) or None.

    ``reference_at(e)`` gives the reference curve as known once it reached epoch e (it may
    wait for a reference still training), as the live check at rung e sees it; only rungs
    ``curve`` holds are looked at. With a complete reference this is ``decide``.
    """
    if not active(cfg):
        return None
    for e in rung_epochs(cfg.epochs, cfg.early_stop_rungs):
        if val_at(curve, e) is None:
            break
        reference = reference_at(e)
        if behind(curve, reference, cfg, e):
            return e, reason(curve, reference, cfg, e)
    return None
