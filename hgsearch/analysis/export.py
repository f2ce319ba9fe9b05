"""Export a selected trial's compact model to RESULTS/selected/, for use outside hgsearch.

The folder holds ``model.pt`` (a byte copy of the trial's model file, read back with
``hgsearch.models.load_model``), ``arch.json`` (what rebuilds the network: arch, num_classes,
widths, input_size, and how to feed it: preprocessing and class names), ``model.onnx`` (the
compact network, batch size free, exported on CPU by torch (``export_onnx``; needs the package
``onnx``); its ``metadata_props`` hold the preprocessing and the classes too) and
``model_card.json`` (the trial's keys and metrics, the preprocessing, the classes, the rule and
the reason). It is written into a temporary folder and renamed into place, replacing a
previous selection; nothing is left behind on error.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hgsearch.analysis.select_trial import TrialChoice
from hgsearch.config import FIELDS
from hgsearch.errors import UserError
from hgsearch.fileio import atomic_path, json_safe, utc_now, write_json_atomic
from hgsearch.results_layout import ResultsFolder

SELECTED = ResultsFolder(".").selected.name    # the folder's name, as pages link to it
# Side of the square images each dataset's pipeline feeds the network (imagefolder: its key).
INPUT_SIZE = {"synthetic": 32, "cifar10": 32, "cifar100": 32, "tinyimagenet": 64}
METRICS = (
    "status", "acc_dense", "acc_pruned", "acc_final", "test_acc_final",
    "params_dense", "params_final", "params_ratio", "macs_dense", "macs_final", "macs_ratio",
    "kept_channels", "widths_dense", "zero_group_fraction",
    "latency_dense_b1_ms", "latency_final_b1_ms", "latency_dense_bN_ms", "latency_final_bN_ms",
    "latency_dense_b1_iqr_ms", "latency_final_b1_iqr_ms", "latency_dense_bN_iqr_ms",
    "latency_final_bN_iqr_ms", "latency_b1_significant", "latency_bN_significant", "warnings",
    "zero_filter_fraction", "num_classes",
    "seconds_train", "seconds_score", "seconds_finetune", "seconds_total",
    "device", "hostname", "started_at", "finished_at", "is_baseline", "sweep",
)
UNITS = {
    "accuracy": "top-1, fraction 0..1; acc_* on the validation split, test_acc_* on the test split",
    "ratios": "fraction of the dense (unpruned) network",
    "macs": "multiply-accumulates of conv and linear layers per image, one MAC each",
    "latency": "milliseconds per forward, median (iqr: interquartile range), dense and final "
               "timed interleaved; b1: batch 1, bN: the latency_batch key",
}


def input_size(row: pd.Series) -> int:
    """Image side the trial's network was trained on (docs/method.md part 4 datasets)."""
    dataset = str(row.get("dataset", ""))
    if dataset == "imagefolder":
        return int(row["image_size"])
    if dataset not in INPUT_SIZE:
        raise UserError(f"dataset={dataset!r} of the selected trial: expected one of "
                        f"{', '.join([*INPUT_SIZE, 'imagefolder'])}")
    return INPUT_SIZE[dataset]


def find_model_file(results_dir: str | Path, trial_id: str) -> Path:
    """RESULTS/models/<trial_id>.pt, or the one such file below RESULTS (nested sweeps)."""
    results_dir = Path(results_dir)
    direct = ResultsFolder(results_dir).model(trial_id)
    if direct.is_file():
        return direct
    found = sorted(results_dir.glob(f"**/{direct.relative_to(results_dir).as_posix()}"))
    if len(found) == 1:
        return found[0]
    if found:
        raise UserError(f"{results_dir}: {len(found)} model files are named {trial_id}.pt "
                        f"({found[0]}, {found[1]}); point RESULTS at one sweep")
    raise UserError(f"{direct}: no such model file (the selected trial's compact model)")


def jsonable(value: Any) -> Any:
    """Plain JSON types: ``fileio.json_safe`` (scalars unwrapped, NaN as null) plus what a pandas
    row holds: numpy arrays as lists, NA as null, keys and any other object as text."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    value = json_safe(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if pd.isna(value):
        return None
    return str(value)


def model_card(selection: TrialChoice, *, arch: dict[str, Any],
               baseline: pd.Series | None = None,
               controls: list[dict[str, Any]] | None = None,
               confirmation: dict[str, Any] | None = None) -> dict[str, Any]:
    """What model_card.json holds: the trial's keys, its metrics, the rule and the reason, the
    trial against its controls (``analysis.controls.compare``) where the sweep ran some, and
    against its baseline and controls over seeds (``analysis.confirm``) where they ran."""
    row = selection.row
    card: dict[str, Any] = {
        "trial_id": selection.trial_id,
        "rule": selection.rule,
        "settings": selection.settings,
        "reason": selection.reason,
        "selected_at": utc_now("seconds"),
        "preprocessing": arch.get("preprocessing"),
        "classes": arch.get("classes"),
        "architecture": arch,
        "config": {k: row[k] for k in FIELDS if k in row.index},
        "metrics": {k: row[k] for k in METRICS if k in row.index},
        "units": UNITS,
    }
    if baseline is not None:
        card["baseline"] = {k: baseline.get(k) for k in ("trial_id", "acc_final",
                                                         "test_acc_final", "params_final")}
    if controls:
        card["controls"] = controls
    if confirmation:
        card["confirmation"] = confirmation
    return jsonable(card)


def feeding(source: Path, model: Any, row: pd.Series) -> tuple[dict[str, Any], list[str]]:
    """(preprocessing, class names) of a trial's model file; what a model written without them
    (an older hgsearch) lacks is null: its size and dataset come from the row."""
    import torch

    from hgsearch.predict import preprocessing_of

    extra = torch.load(source, map_location="cpu", weights_only=True).get("extra") or {}
    size = extra.get("image_size") or input_size(row)
    pre = preprocessing_of(image_size=size, mean=extra.get("mean"), std=extra.get("std"),
                           dataset=extra.get("dataset") or jsonable(row.get("dataset")),
                           resize_side=extra.get("resize_side"))
    classes = [str(c) for c in extra.get("classes") or range(model.num_classes)]
    return pre, classes


def export_onnx(model: Any, path: Path, *, size: int,
                metadata: dict[str, str] | None = None) -> None:
    """``model`` to ONNX on CPU, input (batch, 3, size, size) with a free batch; ``metadata``
    goes into the file's ``metadata_props``.

    torch's TorchScript exporter first: for these plain conv nets it writes the same graph
    (the tests run the file against the model) in seconds, where the torch.export-based one
    spends tens of seconds importing and tracing (most of ``hgsearch select``'s time). The
    TorchScript exporter is deprecated; where it is gone or fails, the torch.export-based one
    (needs ``onnxscript``) runs instead.
    """
    import torch

    try:
        import onnx  # noqa: F401  (both exporters write through it)
    except ImportError:
        raise UserError("model.onnx needs the package onnx (pip install onnx onnxscript); "
                        "or pass --no-onnx") from None
    net, dummy = model.cpu().eval(), torch.zeros(2, 3, size, size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # its deprecation notice, which is the point above
            torch.onnx.export(net, (dummy,), str(path), input_names=["input"],
                              output_names=["logits"], dynamo=False,
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    except Exception as first:   # the TorchScript exporter removed or unable: the current one
        try:
            _export_onnx_dynamo(net, dummy, path)
        except UserError:
            raise
        except Exception as second:   # both failed: say both, not only the last
            raise RuntimeError(f"ONNX export failed with both exporters: TorchScript: {first!r}; "
                               f"torch.export: {second!r}") from second
    if metadata:
        import onnx

        graph = onnx.load(str(path))
        onnx.helper.set_model_props(graph, metadata)
        with atomic_path(path) as tmp:
            onnx.save(graph, str(tmp))


def _export_onnx_dynamo(net: Any, dummy: Any, path: Path) -> None:
    import torch

    try:
        import onnxscript  # noqa: F401  (say so before the exporter fails deep inside)
    except ImportError:
        raise UserError("model.onnx needs the packages onnx and onnxscript (pip install onnx "
                        "onnxscript); or pass --no-onnx") from None
    torch.onnx.export(net, (dummy,), str(path), input_names=["input"], output_names=["logits"],
                      dynamo=True, external_data=False,
                      dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), verbose=False)


def export_selection(results_dir: str | Path, selection: TrialChoice, *, onnx: bool = True,
                     baseline: pd.Series | None = None,
                     controls: list[dict[str, Any]] | None = None,
                     confirmation: dict[str, Any] | None = None) -> Path:
    """Write RESULTS/selected/ for ``selection`` atomically; return that folder."""
    from hgsearch.models import load_model

    results_dir = Path(results_dir)
    source = find_model_file(results_dir, selection.trial_id)
    from hgsearch.predict import onnx_metadata

    model = load_model(source)
    pre, classes = feeding(source, model, selection.row)
    arch = {"arch": model.arch, "num_classes": model.num_classes, "widths": list(model.widths),
            "input_size": pre["image_size"], "preprocessing": pre, "classes": classes}
    target = ResultsFolder(results_dir).selected
    tmp = Path(tempfile.mkdtemp(prefix=f".{SELECTED}.", dir=results_dir))
    try:
        shutil.copyfile(source, tmp / "model.pt")
        _write_json(tmp / "arch.json", arch)
        if onnx:
            export_onnx(model, tmp / "model.onnx", size=arch["input_size"],
                        metadata=onnx_metadata(pre, classes))
        card = model_card(selection, arch=arch, baseline=baseline, controls=controls,
                          confirmation=confirmation)
        card["files"] = sorted(p.name for p in tmp.iterdir()) + ["model_card.json"]
        _write_json(tmp / "model_card.json", card)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the selection is for sharing
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _write_json(path: Path, data: Any) -> None:
    write_json_atomic(path, data)


def _swap_in(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``; a previous ``target`` is moved aside first, then deleted.

    POSIX cannot rename a folder onto a non-empty one, so for a moment there is no target;
    there is never a half-written one.
    """
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old.{os.getpid()}")
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
