"""Trial rows and curves as Parquet: one file per trial, written atomically, read back as pandas.

A results folder holds ``trials/<trial_id>.parquet`` (one row), ``curves/<trial_id>.parquet``
(one row per epoch) and ``models/<trial_id>.pt``. Files are written under a temporary name and
renamed, so a reader never sees half a file and a rewrite of the same trial replaces it: a trial is
counted once however often it is written.

Every column a row can have is declared here once with its type (``ROW_TYPES``: the trial keys,
the metrics and the sweep's bookkeeping), so any mix of ``hgsearch trial`` and sweep folders
loads and concatenates with the same dtypes. A trial key that does not apply to the trial
(``inapplicable.inapplicable_keys``) is written as null, so a searched value never looks like an
unused default.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hgsearch.config import TrialConfig
from hgsearch.errors import UserError
from hgsearch.fileio import atomic_path
from hgsearch.inapplicable import inapplicable_keys
from hgsearch.results_layout import ResultsFolder  # re-exported: results.py owns the folder

_ARROW_OF = {"bool": pa.bool_(), "int": pa.int64(), "float": pa.float64(), "str": pa.string()}

# Every metric column a trial row has, whatever its status; missing values are nulls.
METRIC_TYPES: dict[str, pa.DataType] = {
    "status": pa.string(),            # ok | diverged | failed | stopped (early stop: no objectives)
    "error": pa.string(),
    "num_classes": pa.int64(),
    "val_images": pa.int64(),         # validation images: n of an accuracy's standard error
    "acc_dense": pa.float64(),        # validation top-1 after HGSR training (fraction)
    "test_acc_dense": pa.float64(),
    "acc_pruned": pa.float64(),       # validation top-1 of the compact network before fine-tuning
    "acc_final": pa.float64(),        # validation top-1 after fine-tuning: the search's objective
    "test_acc_final": pa.float64(),   # official test split, reported, never used for selection
    "val_loss_final": pa.float64(),
    "params_dense": pa.int64(),
    "params_final": pa.int64(),
    "params_ratio": pa.float64(),
    "macs_dense": pa.int64(),         # multiply-accumulates of conv + linear layers, one image
    "macs_final": pa.int64(),
    "macs_ratio": pa.float64(),
    "widths_dense": pa.list_(pa.int64()),
    "kept_channels": pa.list_(pa.int64()),  # inner width of each block after pruning
    "zero_group_fraction": pa.float64(),
    "zero_filter_fraction": pa.float64(),   # prunable filters exactly zero after HGSR
    "acc_zero_pruned": pa.float64(),        # val accuracy with exactly-zero filters removed
    # Median ms of one forward; dense and final timed interleaved in one process after
    # fine-tuning (metrics.measure_pair): same batch, threads and warmup for both.
    "latency_dense_b1_ms": pa.float64(),
    "latency_final_b1_ms": pa.float64(),
    "latency_dense_bN_ms": pa.float64(),   # batch latency_batch
    "latency_final_bN_ms": pa.float64(),
    "latency_dense_b1_iqr_ms": pa.float64(),  # interquartile range of the timed forwards
    "latency_final_b1_iqr_ms": pa.float64(),
    "latency_dense_bN_iqr_ms": pa.float64(),
    "latency_final_bN_iqr_ms": pa.float64(),
    # The median difference dense - final exceeds the larger IQR: the speed-up (or slow-down)
    # is more than the spread of the timings. Null where dense and final were not timed together.
    "latency_b1_significant": pa.bool_(),
    "latency_bN_significant": pa.bool_(),
    "warnings": pa.string(),          # "; "-joined row_warnings: what makes the row suspect
    "seconds_data": pa.float64(),
    "seconds_train": pa.float64(),
    "seconds_score": pa.float64(),
    "seconds_finetune": pa.float64(),
    "seconds_measure": pa.float64(),
    "seconds_total": pa.float64(),
    "prune_note": pa.string(),
    # The user's initial weights (init_weights; hgsearch/models/weights.py), null without them.
    "init_weights_sha256": pa.string(),   # the weights file's content hash (also in dense_key)
    "init_weights_note": pa.string(),     # what was not taken from the file (a new classifier)
    "acc_init": pa.float64(),         # validation top-1 of the network as given, before training
    "test_acc_init": pa.float64(),    # (null when its classifier was replaced)
    # Shared dense training and early stopping (hgsearch/dense_store.py, early_stop.py).
    "dense_key": pa.string(),         # content address of the dense network (with a store)
    "dense_reused": pa.bool_(),       # the network came from the store (another trial trained it)
    "seconds_train_saved": pa.float64(),  # the stored training's seconds_train; 0.0 if trained here
    "stopped_epoch": pa.int64(),      # the epoch a `stopped` trial ended its dense phase at
    "scores_reused": pa.bool_(),      # one-shot filter scores came from the store (score_cache)
    # Images processed HERE (the sweep-cost benchmark): forward + backward in training and
    # fine-tuning (finetune_between included), forwards in scoring (loss_increase: samples x
    # (filters + 1) per round; other criteria: samples) and BatchNorm recalibration. Evaluation
    # forwards are not counted. A reused training adds nothing (0, or what this trial trained
    # itself before a resume found the network stored).
    "images_train": pa.int64(),
    "images_finetune": pa.int64(),
    "images_score": pa.int64(),
    "device": pa.string(),
    "device_name": pa.string(),
    "numerics": pa.string(),          # what ran: "fp32" or "bf16" autocast, "+nhwc" channels_last
    "hostname": pa.string(),
    "started_at": pa.string(),        # ISO 8601, UTC
    "finished_at": pa.string(),
    "versions": pa.string(),          # "hgsearch=..., torch=..., ..."
}

# Columns a sweep adds to each row (search/worker.py); null in rows of a plain `hgsearch trial`.
SWEEP_TYPES: dict[str, pa.DataType] = {
    "sweep": pa.string(),             # the sweep's name
    "is_baseline": pa.bool_(),        # the unregularized, unpruned reference trial
    "optuna_number": pa.int64(),      # the Optuna trial number; -1 for the baseline
    "ray_trial_id": pa.string(),
    "node_id": pa.string(),           # the Ray node the trial ran on
    "node_ip": pa.string(),
    "cuda_visible_devices": pa.string(),
    "cpu_threads": pa.int64(),        # torch threads the trial used
    "restarts": pa.int64(),           # times the trial resumed from a checkpoint
    "checkpoint_note": pa.string(),   # why a checkpoint was not used (unreadable: started over)
    "attempts": pa.int64(),           # on a driver-written failed row: attempts Tune made
    # A control (hgsearch/search/controls.py): a network of the pruned trial's size trained from
    # scratch, never on the front nor selected; null on every other row.
    "control": pa.string(),           # scratch | uniform
    "control_of": pa.string(),        # the trial_id of the pruned trial it controls
    # A confirmation seed (hgsearch/search/confirm.py): a trial re-run with seed + confirm_seed,
    # never on the front nor selected; null on every other row.
    "confirm_of": pa.string(),        # the trial_id of the trial it re-runs
    "confirm_seed": pa.int64(),       # k of seed + k, 1..K
}

CURVE_TYPES: dict[str, pa.DataType] = {
    "trial_id": pa.string(), "phase": pa.string(), "epoch": pa.int64(), "lr": pa.float64(),
    "train_loss": pa.float64(), "train_acc": pa.float64(), "val_loss": pa.float64(),
    "val_acc": pa.float64(), "images_per_s": pa.float64(), "seconds": pa.float64(),
}


def config_types() -> dict[str, pa.DataType]:
    return {f.name: _ARROW_OF[f.type] for f in dataclasses.fields(TrialConfig)}


def row_types() -> dict[str, pa.DataType]:
    """Every declared row column and its Arrow type: trial keys, metrics, sweep bookkeeping."""
    return {**config_types(), **METRIC_TYPES, **SWEEP_TYPES}


def row_schema(row: Mapping[str, Any]) -> pa.Schema:
    """Declared types for declared columns; a column nobody declared gets its inferred type."""
    known = row_types()
    fields = []
    for name, value in row.items():
        if name in known:
            fields.append(pa.field(name, known[name]))
        else:
            fields.append(pa.field(name, pa.scalar(value).type if value is not None
                                   else pa.string()))
    return pa.schema(fields)


# A trial at or below this multiple of chance (1 / num_classes) validation accuracy learned
# nothing worth keeping: 1.5x chance is 15% on CIFAR-10, 0.75% on 200 classes, several standard
# deviations of a guessing network's accuracy on validation splits of a few thousand images.
CHANCE_FACTOR = 1.5


def row_warnings(row: Mapping[str, Any]) -> list[str]:
    """What makes a finished trial's figures suspect, one sentence each (empty: nothing).

    - a proximal trial (reg_solver=proximal with a regularizer) that ends its dense training
      with no exactly-zero filter: the solver's one promise, exact zeros, was not kept;
    - a trial whose final validation accuracy is at chance (``CHANCE_FACTOR`` / num_classes).
    """
    out = []
    reg, solver = _text(row.get("reg")), _text(row.get("reg_solver"))
    regularized = reg not in (None, "none") and _number(row.get("lam")) not in (None, 0.0)
    zero = _number(row.get("zero_filter_fraction"))
    if solver == "proximal" and regularized and zero == 0.0:
        out.append("proximal solver left no exactly-zero filter (zero_filter_fraction 0): "
                   "lam too small or too few epochs for exact sparsity")
    acc, classes = _number(row.get("acc_final")), _number(row.get("num_classes"))
    if acc is not None and classes:
        chance = 1.0 / classes
        if acc <= CHANCE_FACTOR * chance:
            out.append(f"acc_final {100 * acc:.1f}% is at chance (at most {CHANCE_FACTOR:g} x "
                       f"1/{int(classes)} = {100 * CHANCE_FACTOR * chance:.1f}%)")
    return out


def _text(value: Any) -> str | None:
    """A text cell as str; None for a null of any kind (None, NaN, pd.NA)."""
    return None if value is None or value is pd.NA or (isinstance(value, float) and
                                                       math.isnan(value)) else str(value)


def _number(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def empty_metrics() -> dict[str, Any]:
    return {name: None for name in METRIC_TYPES}


def _clean(value: Any) -> Any:
    # NaN in a float column is kept as null so "no value" reads the same whatever the cause.
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def write_table_atomic(table: pa.Table, path: Path) -> None:
    """Write Parquet under a temporary name in the same folder, then rename over ``path``."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def honest_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row with NaN as null and every trial key that does not apply to it as null."""
    off = inapplicable_keys({k: v for k, v in row.items() if k in _CONFIG_KEYS})
    return {k: None if k in off else _clean(v) for k, v in row.items()}


_CONFIG_KEYS = frozenset(f.name for f in dataclasses.fields(TrialConfig))


def write_row(out_dir: str | Path, row: Mapping[str, Any]) -> Path:
    """Write one trial's row to ``out_dir/trials/<trial_id>.parquet`` (see ``honest_row``)."""
    row = honest_row(row)
    table = pa.Table.from_pylist([row], schema=row_schema(row))
    path = ResultsFolder(out_dir).row(row["trial_id"])
    write_table_atomic(table, path)
    return path


def write_curve(out_dir: str | Path, trial_id: str, records: Sequence[Mapping[str, Any]]) -> Path:
    """Write one trial's per-epoch curve to ``out_dir/curves/<trial_id>.parquet``."""
    rows = [{**{k: None for k in CURVE_TYPES}, **{k: _clean(v) for k, v in r.items()},
             "trial_id": trial_id} for r in records]
    table = pa.Table.from_pylist(rows, schema=pa.schema(list(CURVE_TYPES.items())))
    path = ResultsFolder(out_dir).curve(trial_id)
    write_table_atomic(table, path)
    return path


def _pandas_dtype(arrow_type: pa.DataType) -> Any:
    if arrow_type == pa.int64():
        return "Int64"
    if arrow_type == pa.float64():
        return "float64"
    if arrow_type == pa.bool_():
        return "boolean"
    if arrow_type == pa.string():
        return "string"
    return None


def baseline_mask(rows: pd.DataFrame) -> np.ndarray:
    """True on the rows of baseline trials (``is_baseline``); null or no such column: False."""
    if "is_baseline" not in rows.columns:
        return np.zeros(len(rows), dtype=bool)
    return rows["is_baseline"].eq(True).fillna(False).to_numpy(dtype=bool)


def control_mask(rows: pd.DataFrame) -> np.ndarray:
    """True on the rows of a sweep's controls (``control`` set): references, not candidates."""
    if "control" not in rows.columns:
        return np.zeros(len(rows), dtype=bool)
    return rows["control"].notna().to_numpy(dtype=bool)


def confirm_mask(rows: pd.DataFrame) -> np.ndarray:
    """True on the rows of confirmation seeds (``confirm_of`` set): repeats, not candidates."""
    if "confirm_of" not in rows.columns:
        return np.zeros(len(rows), dtype=bool)
    return rows["confirm_of"].notna().to_numpy(dtype=bool)


def load_results(path: str | Path) -> pd.DataFrame:
    """All trial rows under a results folder as a DataFrame, one row per trial.

    Failed and diverged trials are included with their ``status``. Every declared column is
    present with its dtype (nullable ``Int64`` for counts, ``float64`` for figures, ``boolean``,
    ``string`` for text), so frames from several folders concatenate cleanly. A row file that is
    not readable Parquet is skipped with a warning naming it; ``df.attrs["skipped"]`` lists
    them as ``(path, reason)``. The result is sorted by ``started_at``.
    """
    folder = Path(path)
    trials = ResultsFolder(folder).trials
    if not folder.is_dir():
        raise UserError(f"{folder}: no such results folder")
    if not trials.is_dir():
        raise UserError(f"{folder}: not a results folder (no trials/ inside; expected the --out "
                        "of `hgsearch trial` or results/<sweep name>)")
    files = sorted(p for p in trials.glob("*.parquet") if not p.name.startswith("."))
    frames, skipped = [], []
    for f in files:
        try:
            frames.append(pq.read_table(f).to_pandas())
        except Exception as err:  # a foreign or damaged file: name it, do not stop the rest
            skipped.append((str(f), f"not a readable Parquet row ({err.__class__.__name__})"))
            warnings.warn(f"{f}: skipped, not a readable Parquet row ({err.__class__.__name__})",
                          stacklevel=2)
    frames = [_typed(f) for f in frames]
    if not frames:
        df = _typed(pd.DataFrame({"trial_id": pd.Series([], dtype="string")}))
    else:
        df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        df = _typed(df)
    if "started_at" in df and len(df):
        df = df.sort_values("started_at", kind="stable", na_position="last")
    df = df.reset_index(drop=True)
    df.attrs = {"skipped": skipped}
    return df


def typed(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of a frame of rows with every declared column in its dtype (attrs kept)."""
    out = _typed(df)
    out.attrs = dict(df.attrs)
    return out


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Every declared column with its dtype, added as nulls where missing; order: declared."""
    out = {}
    for name, arrow_type in row_types().items():
        dtype = _pandas_dtype(arrow_type)
        if name not in df:
            out[name] = pd.Series([None] * len(df), index=df.index, dtype=dtype or object)
        elif dtype is not None:
            out[name] = df[name].astype(dtype)
        else:
            out[name] = df[name].astype(object)
    extra = {c: df[c] for c in df.columns if c not in out}
    return pd.DataFrame({**out, **extra}, index=df.index)


def load_curves(path: str | Path) -> pd.DataFrame:
    """All per-epoch curves under a results folder (one row per trial and epoch).

    Declared dtypes as for rows; unreadable curve files are skipped with a warning and listed
    in ``df.attrs["skipped"]``.
    """
    curves = ResultsFolder(path).curves
    files = sorted(p for p in curves.glob("*.parquet") if not p.name.startswith("."))
    frames, skipped = [], []
    for f in files:
        try:
            frames.append(pq.read_table(f).to_pandas())
        except Exception as err:
            skipped.append((str(f), f"not a readable Parquet curve ({err.__class__.__name__})"))
            warnings.warn(f"{f}: skipped, not a readable Parquet curve "
                          f"({err.__class__.__name__})", stacklevel=2)
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    df = pd.DataFrame({k: (df[k] if k in df else pd.Series([None] * len(df), dtype=object))
                       .astype(_pandas_dtype(t)) for k, t in CURVE_TYPES.items()})
    df.attrs = {"skipped": skipped}
    return df
