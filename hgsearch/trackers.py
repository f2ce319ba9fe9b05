"""Experiment trackers a sweep writes to besides its Parquet rows: MLflow and TensorBoard.

Each tracker gets one call per written trial row, ``log_trial(row, curves, model_path)`` (the row
as written, its per-epoch curve frame and its compact model file, either may be None), and
``close()`` at the end. ``make_trackers(mlflow=..., tensorboard=...)`` builds the ones asked for.

- ``MLflowTracker(uri_or_dir)``: one MLflow run per trial (named by its trial id; a retried or
  re-logged trial replaces its run): the trial keys that apply to it as params, each epoch's
  figures as metric steps (``train/val_acc``, ``finetune/train_loss``, ... at step = epoch), the
  final figures as metrics, the compact model and the row as artifacts. A folder becomes MLflow's
  default local store, an SQLite file ``DIR/mlflow.db`` with artifacts in ``DIR/artifacts``: no
  server, and ``mlflow ui --backend-store-uri sqlite:///DIR/mlflow.db`` opens it. A URI
  (``sqlite:///...``, ``http://...``, ``databricks``) is used as it is.
- ``TensorBoardTracker(dir)``: ``DIR/<trial_id>/`` event files holding the trial's per-epoch
  curves (only real values: no NaN placeholders) and its final figures; ``tensorboard --logdir
  DIR``.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hgsearch.config import FIELDS, SAFE_NAME
from hgsearch.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

CURVE_FIGURES = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_s",
                 "seconds")
EXPERIMENT = "hgsearch"


class Tracker(Protocol):
    def log_trial(self, row: Mapping[str, Any], curves: pd.DataFrame | None,
                  model_path: Path | None) -> None: ...

    def close(self) -> None: ...


def _number(value: Any) -> float | None:
    """A finite float, or None for anything else (text, lists, bools, NaN, NA)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def final_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    """The row's numeric figures (not its trial keys), finite ones only."""
    out = {}
    for key, value in row.items():
        number = _number(value)
        if key not in FIELDS and number is not None:
            out[key] = number
    return out


def params_of(row: Mapping[str, Any]) -> dict[str, str]:
    """The trial keys that apply to this trial (``inapplicable.inapplicable_keys``), as text."""
    from hgsearch.results import honest_row

    honest = honest_row({k: v for k, v in row.items() if k in FIELDS})
    return {k: str(v) for k, v in honest.items() if v is not None and k != "out_dir"}


def curve_points(curves: pd.DataFrame | None) -> list[tuple[str, int, float]]:
    """(``phase/figure``, epoch, value) for every real value of a trial's curve frame."""
    if curves is None or len(curves) == 0:
        return []
    out = []
    for record in curves.to_dict("records"):
        epoch = _number(record.get("epoch"))
        phase = record.get("phase")
        if epoch is None or not isinstance(phase, str):
            continue
        for figure in CURVE_FIGURES:
            value = _number(record.get(figure))
            if value is not None:
                out.append((f"{phase}/{figure}", int(epoch), value))
    return out


def _trial_id(row: Mapping[str, Any]) -> str:
    trial_id = str(row.get("trial_id") or "")
    if not SAFE_NAME.match(trial_id):
        raise UserError(f"trial_id={trial_id!r}: not a valid trial id")
    return trial_id


def _millis(stamp: Any) -> int | None:
    try:
        return int(datetime.fromisoformat(str(stamp)).timestamp() * 1000)
    except (TypeError, ValueError):
        return None


class MLflowTracker:
    """One MLflow run per trial in experiment ``experiment`` (default: the row's sweep name)."""

    def __init__(self, uri_or_dir: str | Path, *, experiment: str | None = None) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise UserError("--mlflow needs the package mlflow (pip install 'hgsearch[mlflow]' "
                            "or pip install mlflow)") from None
        text = str(uri_or_dir)
        self.artifacts: str | None = None
        if "://" in text or text.startswith(("sqlite:", "databricks")):
            self.uri = text
        else:
            folder = Path(text).expanduser().resolve()
            if folder.exists() and not folder.is_dir():
                raise UserError(f"--mlflow {text}: is a file; give a folder or a tracking URI")
            folder.mkdir(parents=True, exist_ok=True)
            self.uri = f"sqlite:///{folder / 'mlflow.db'}"
            self.artifacts = (folder / "artifacts").as_uri()
        self.client = MlflowClient(tracking_uri=self.uri)
        self.experiment = experiment
        self._ids: dict[str, str] = {}

    def _experiment_id(self, name: str) -> str:
        if name not in self._ids:
            found = self.client.get_experiment_by_name(name)
            self._ids[name] = found.experiment_id if found else self.client.create_experiment(
                name, artifact_location=self.artifacts and f"{self.artifacts}/{name}")
        return self._ids[name]

    def log_trial(self, row: Mapping[str, Any], curves: pd.DataFrame | None,
                  model_path: Path | None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        from hgsearch.analysis.export import jsonable

        trial_id = _trial_id(row)
        name = self.experiment or str(row.get("sweep") or EXPERIMENT)
        experiment = self._experiment_id(name)
        for old in self.client.search_runs([experiment],
                                           f"tags.hgsearch_trial_id = '{trial_id}'"):
            self.client.delete_run(old.info.run_id)   # a retry replaces the trial's run
        status = str(row.get("status") or "")
        tags = {"hgsearch_trial_id": trial_id, "hgsearch_status": status}
        if row.get("error"):
            tags["hgsearch_error"] = str(row["error"])[:5000]
        run = self.client.create_run(experiment, start_time=_millis(row.get("started_at")),
                                     tags=tags, run_name=trial_id)
        run_id = run.info.run_id
        stamp = _millis(row.get("finished_at")) or 0
        params = [Param(k, v[:6000]) for k, v in params_of(row).items()]
        metrics = [Metric(k, v, stamp, 0) for k, v in final_metrics(row).items()]
        metrics += [Metric(k, v, stamp, step) for k, step, v in curve_points(curves)]
        for start in range(0, max(len(params), len(metrics)), 100):  # MLflow's batch limits
            self.client.log_batch(run_id, metrics=metrics[start:start + 100],
                                  params=params[start:start + 100],
                                  tags=[RunTag(k, v) for k, v in tags.items()] if not start
                                  else [])
        self.client.log_dict(run_id, jsonable(dict(row)), "row.json")
        if model_path is not None and Path(model_path).is_file():
            self.client.log_artifact(run_id, str(model_path), "model")
        self.client.set_terminated(run_id, "FINISHED" if status == "ok" else "FAILED",
                                   end_time=_millis(row.get("finished_at")))

    def close(self) -> None:
        self._ids.clear()


class TensorBoardTracker:
    """``DIR/<trial_id>/`` event files: per-epoch curves and final figures of each trial."""

    def __init__(self, directory: str | Path) -> None:
        self.root = Path(directory).expanduser()
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"--tensorboard {directory}: is a file; give a folder")
        self.root.mkdir(parents=True, exist_ok=True)

    def log_trial(self, row: Mapping[str, Any], curves: pd.DataFrame | None,
                  model_path: Path | None) -> None:
        from tensorboardX import SummaryWriter

        trial_id = _trial_id(row)
        folder = self.root / trial_id
        shutil.rmtree(folder, ignore_errors=True)   # a retry replaces the trial's curves
        points = curve_points(curves)
        last = max((step for _, step, _ in points), default=0)
        writer = SummaryWriter(logdir=str(folder), flush_secs=3600)
        try:
            for tag, step, value in points:
                writer.add_scalar(tag, value, global_step=step)
            for key, value in final_metrics(row).items():
                writer.add_scalar(f"final/{key}", value, global_step=last)
            params = params_of(row)
            writer.add_text("trial", "  \n".join(
                [f"status: {row.get('status')}", *(f"{k}: {v}" for k, v in params.items())]),
                global_step=last)
        finally:
            writer.close()

    def close(self) -> None:
        pass


def make_trackers(*, mlflow: str | None = None, tensorboard: str | None = None) -> list[Tracker]:
    """The trackers asked for (none: an empty list); UserError when one cannot be set up."""
    trackers: list[Tracker] = []
    if mlflow:
        trackers.append(MLflowTracker(mlflow))
    if tensorboard:
        trackers.append(TensorBoardTracker(tensorboard))
    return trackers

