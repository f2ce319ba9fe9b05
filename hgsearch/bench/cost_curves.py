"""Hypervolume against compute for one sweep's rows, and the compute one sweep needs to reach
another's hypervolume: the figures of ``hgsearch bench --suite sweep-cost``.

A curve has one point per row in completion order (``finished_at``): the hypervolume of the
searched trials finished so far (``analysis.front.hypervolume_history``; the baseline's row is
not searched, so it adds no volume, but its compute counts) against the compute spent by then:

- images: ``images_train + images_finetune + images_score`` of every row, each trial's images
  spread evenly over its run, so a point at time T also counts the part of the work that trials
  still running at T had done (a trial without ``started_at`` counts once it finished);
- wall seconds: T less the earliest ``started_at`` of the sweep (Ray's start is not counted);
- dense trainings: the rows finished so far that trained a network (``images_train`` above 0:
  the baseline, each plain trial, a ladder's first trial, a trial stopped early), which is what
  the economical sweep saves; a reused network adds none.

Rows of a version that does not count images (no such columns, or a row other than ``failed``
without them) give no image axis; the wall-time one remains.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from hgsearch.analysis.front import completion_order, hypervolume_history, parse_objectives
from hgsearch.errors import UserError
from hgsearch.results import baseline_mask

IMAGE_COLUMNS = ("images_train", "images_finetune", "images_score")
# Same-volume tolerance: two sweeps reaching the same front differ by float rounding only.
REL_TOL = 1e-9
# The economical sweep's target share of the plain compute (at most a third).
TARGET = 1.0 / 3.0
# What ``reach`` tells of the point that reached (all None when none did).
REACH_FIGURES = ("trials", "images", "wall_s", "trainings")


@dataclass(frozen=True)
class Curve:
    """One sweep's points in completion order; ``images`` / ``wall_s`` None: not available."""

    trial_ids: list[str]
    hv: list[float]
    images: list[float] | None
    wall_s: list[float] | None
    trainings: list[int] | None = None

    @property
    def final_hv(self) -> float:
        return self.hv[-1] if self.hv else 0.0

    def total(self, axis: str) -> float | None:
        """The whole sweep's compute on ``axis`` ("images" or "wall_s")."""
        values = getattr(self, axis)
        return None if values is None else (values[-1] if values else 0.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def searched_hv(rows: pd.DataFrame, objectives: Any,
                reference: Sequence[float] | Mapping[str, float]) -> pd.Series:
    """``hypervolume_history`` with the baseline's rows kept in the order but adding nothing;
    all zeros when no searched row is usable (every trial failed or was stopped)."""
    objs = parse_objectives(objectives)
    for name, _ in objs:
        if name not in rows.columns:
            raise UserError(f"objective {name!r}: no such column in the sweep's rows")
    marked = rows.copy()
    status = marked["status"] if "status" in marked else pd.Series("ok", index=marked.index)
    status = status.astype("string").where(~baseline_mask(marked), "baseline")
    marked["status"] = status
    values = np.stack([pd.to_numeric(marked[n], errors="coerce").to_numpy(dtype=float)
                       for n, _ in objs], axis=1)
    if not (status.eq("ok").fillna(False).to_numpy(dtype=bool)
            & np.isfinite(values).all(axis=1)).any():
        order = completion_order(marked)
        return pd.Series(0.0, index=marked.index[order], name="hypervolume", dtype=float)
    return hypervolume_history(marked, objs, reference)


def _times(rows: pd.DataFrame, column: str) -> np.ndarray:
    if column not in rows.columns:
        return np.full(len(rows), np.nan)
    t = pd.to_datetime(rows[column], utc=True, format="ISO8601", errors="coerce")
    seconds = (t - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return seconds.to_numpy(dtype=float, na_value=np.nan)


def images_per_row(rows: pd.DataFrame) -> tuple[np.ndarray | None, str | None]:
    """Images each row processed (failed rows without counts: 0), or None and why not."""
    missing = [c for c in IMAGE_COLUMNS if c not in rows.columns]
    if missing:
        return None, f"the rows have no {', '.join(missing)} (a version that does not count them)"
    counts = np.stack([pd.to_numeric(rows[c], errors="coerce").to_numpy(dtype=float)
                       for c in IMAGE_COLUMNS], axis=1)
    status = rows["status"].astype("string") if "status" in rows else pd.Series("ok", rows.index)
    failed = status.eq("failed").fillna(False).to_numpy(dtype=bool)
    lacking = ~np.isfinite(counts).all(axis=1) & ~failed
    if lacking.any():
        return None, f"{int(lacking.sum())} row(s) other than failed ones lack image counts"
    return np.nan_to_num(counts, nan=0.0).sum(axis=1), None


def cost_curve(rows: pd.DataFrame, objectives: Any,
               reference: Sequence[float] | Mapping[str, float]) -> tuple[Curve, list[str]]:
    """The sweep's curve and notes on what it could not measure."""
    notes: list[str] = []
    hv = searched_hv(rows, objectives, reference)
    pos = pd.Series(np.arange(len(rows)), index=rows.index)[hv.index].to_numpy()
    start, finish = _times(rows, "started_at"), _times(rows, "finished_at")
    t_done = finish[pos]
    # A row without finished_at sorts last (completion_order): it ends at the last known time.
    t_done = pd.Series(t_done).ffill().to_numpy(dtype=float)
    t0 = np.nanmin(start) if np.isfinite(start).any() else (
        np.nanmin(finish) if np.isfinite(finish).any() else math.nan)
    wall = None
    if math.isfinite(t0):
        wall = [float(max(0.0, t - t0)) if math.isfinite(t) else 0.0 for t in t_done]
    else:
        notes.append("no started_at / finished_at: no wall-time axis")
    per_row, why = images_per_row(rows)
    images = trainings = None
    if per_row is None:
        notes.append(f"no image axis: {why}")
    else:
        trained = pd.to_numeric(rows["images_train"], errors="coerce").fillna(0).to_numpy() > 0
        trainings = np.cumsum(trained[pos]).astype(int).tolist()
        images, span = [], finish - start
        for i, t in enumerate(t_done):
            done = np.zeros(len(rows))
            done[pos[: i + 1]] = 1.0          # the rows finished up to this point
            with np.errstate(invalid="ignore", divide="ignore"):
                part = np.clip((t - start) / span, 0.0, 1.0)   # of those still running
            part = np.where(np.isfinite(part) & (span > 0), part, 0.0)
            images.append(float((per_row * np.maximum(done, part)).sum()))
    ids = rows["trial_id"].astype(str).to_numpy()[pos] if "trial_id" in rows else pos.astype(str)
    return Curve(trial_ids=[str(i) for i in ids], hv=[float(v) for v in hv], images=images,
                 wall_s=wall, trainings=trainings), notes


def reach(curve: Curve, target: float) -> dict[str, Any]:
    """The compute at the first point whose hypervolume reaches ``target`` (within rounding):
    ``{"reached", "trials", "images", "wall_s", "trainings"}``; not reached: None for each
    figure."""
    for i, value in enumerate(curve.hv):
        if value >= target * (1.0 - REL_TOL):
            return {"reached": True, "trials": i + 1,
                    **{axis: None if getattr(curve, axis) is None else getattr(curve, axis)[i]
                       for axis in REACH_FIGURES[1:]}}
    return {"reached": False, **dict.fromkeys(REACH_FIGURES)}


def hv_within(curve: Curve, axis: str, budget: float) -> float | None:
    """The hypervolume ``curve`` had reached with at most ``budget`` spent on ``axis`` (0 before
    its first point); None when the curve has no such axis."""
    spent = getattr(curve, axis)
    if spent is None:
        return None
    within = [hv for hv, x in zip(curve.hv, spent) if x <= budget * (1.0 + REL_TOL)]
    return max(within, default=0.0)


def compare(plain: Curve, economical: Curve) -> dict[str, Any]:
    """Both final hypervolumes, the economical sweep's compute to reach the plain one's final
    hypervolume, and that as a ratio of the plain sweep's total compute, per axis; the
    economical sweep's hypervolume with a third of that compute, as a share of the plain one's;
    the dense trainings each had finished (at the reach point, and in all)."""
    out: dict[str, Any] = {"plain_hv": plain.final_hv, "economical_hv": economical.final_hv}
    if plain.final_hv <= 0.0:   # nothing to reach: a ratio would mean nothing
        out.update(reached=None, note="the plain sweep has no volume above the reference")
        got = dict.fromkeys(REACH_FIGURES)
    else:
        got = reach(economical, plain.final_hv)
        out["reached"] = got["reached"]
    out["reach_trials"] = got["trials"]
    # What the ratio is made of (README, "Why not a third"): the baseline's training included.
    out["reach_trainings"] = got["trainings"]
    out["plain_trainings"] = plain.trainings[-1] if plain.trainings else None
    for axis in ("images", "wall_s"):
        total = plain.total(axis)
        out[f"plain_{axis}"] = total
        out[f"economical_{axis}"] = economical.total(axis)
        out[f"reach_{axis}"] = got[axis]
        out[f"ratio_{axis}"] = (got[axis] / total if got[axis] is not None and total
                                else None)
        # A figure without the all-or-nothing of "reached", for every seed.
        hv = hv_within(economical, axis, total * TARGET) if total and plain.final_hv > 0.0 \
            else None
        out[f"hv_share_at_third_{axis}"] = None if hv is None else hv / plain.final_hv
    return out


def summarize(per_seed: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Means over seeds: hypervolumes and shares over all, ratios over the seeds that
    reached."""
    def mean(values: list) -> float | None:
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    out: dict[str, Any] = {"seeds": len(per_seed),
                           "reached": sum(1 for s in per_seed if s.get("reached") is True)}
    for key in ("plain_hv", "economical_hv", "ratio_images", "ratio_wall_s",
                "hv_share_at_third_images"):
        out[key] = mean([s.get(key) for s in per_seed])
    return out
