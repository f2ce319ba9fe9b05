"""MLflow and TensorBoard trackers, read back with MLflow's client and TensorBoard's protobufs."""

from __future__ import annotations

import math
import struct

import pandas as pd
import pytest

from hgsearch.errors import UserError
from hgsearch.results import load_curves, load_results
from hgsearch.trackers import MLflowTracker, TensorBoardTracker, make_trackers


def real(real_trial):
    """The real trial's row as written, its curve frame and model file."""
    folder, _, _ = real_trial
    row = load_results(folder).iloc[0].to_dict()
    curves = load_curves(folder)
    return row, curves, folder / "models" / f"{row['trial_id']}.pt"


def failed_row(row: dict) -> dict:
    return {**row, "trial_id": "t9", "status": "failed", "error": "RuntimeError: boom",
            "acc_final": float("nan"), "test_acc_final": None}


def test_mlflow_store_holds_one_run_per_trial_with_its_curves(real_trial, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    row, curves, model = real(real_trial)
    tracker = make_trackers(mlflow=str(tmp_path / "mlruns"))[0]
    tracker.log_trial(row, curves, model)
    tracker.log_trial(failed_row(row), None, None)
    tracker.log_trial(row, curves, model)          # logged again (a retry): replaced, not added
    tracker.close()

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "hgsearch"]
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["real", "t9"]
    run = runs["real"]
    assert run.info.status == "FINISHED" and runs["t9"].info.status == "FAILED"
    assert runs["t9"].data.tags["hgsearch_error"] == "RuntimeError: boom"
    assert float(run.data.params["lam"]) == row["lam"] and run.data.params["reg_levels"] == "1"
    assert "reg_outer" not in run.data.params       # reg_levels=1: it does not apply
    assert run.data.metrics["acc_final"] == pytest.approx(row["acc_final"])
    assert "acc_final" not in runs["t9"].data.metrics   # NaN is not logged
    for phase in ("train", "finetune"):
        expected = curves[curves.phase == phase].sort_values("epoch")
        history = client.get_metric_history(run.info.run_id, f"{phase}/val_acc")
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == \
            [(int(e), pytest.approx(v)) for e, v in zip(expected.epoch, expected.val_acc)]
    files = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert files == {"model/real.pt"}
    local = client.download_artifacts(run.info.run_id, "model/real.pt", str(tmp_path / "dl"))
    assert open(local, "rb").read() == model.read_bytes()


def read_events(folder):
    """Every scalar (tag, step, value) in a folder's event files: TFRecord framing, Event
    protobufs (TensorBoard's own message definitions, shipped with tensorboardX)."""
    from tensorboardX.proto.event_pb2 import Event

    out = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    out.append((value.tag, event.step, value.simple_value))
    return out


def test_tensorboard_files_hold_each_epoch_and_no_nan(real_trial, tmp_path):
    row, curves, model = real(real_trial)
    tracker = TensorBoardTracker(tmp_path / "tb")
    tracker.log_trial(row, curves, model)
    tracker.log_trial(row, curves, model)          # a retry replaces, not appends
    tracker.log_trial(failed_row(row), None, None)
    tracker.close()
    scalars = read_events(tmp_path / "tb" / "real")
    assert all(math.isfinite(v) for _, _, v in scalars)
    for phase in ("train", "finetune"):
        got = sorted((s, v) for t, s, v in scalars if t == f"{phase}/val_acc")
        expected = curves[curves.phase == phase].sort_values("epoch")
        assert got == [(int(e), pytest.approx(v, rel=1e-6))
                       for e, v in zip(expected.epoch, expected.val_acc)]
    assert [v for t, _, v in scalars if t == "final/acc_final"] == \
        [pytest.approx(row["acc_final"], rel=1e-6)]
    failed = read_events(tmp_path / "tb" / "t9")
    assert not [t for t, _, _ in failed if t.startswith(("train/", "finetune/"))]
    assert "final/acc_final" not in {t for t, _, _ in failed}


def test_curves_with_missing_values_log_only_real_points(tmp_path):
    row = {"trial_id": "x", "status": "ok", "acc_final": 0.5}
    curves = pd.DataFrame({"phase": ["train", "train"], "epoch": [1, 2],
                           "val_acc": [float("nan"), 0.4], "train_loss": [1.0, None]})
    TensorBoardTracker(tmp_path).log_trial(row, curves, None)
    tags = read_events(tmp_path / "x")
    assert sorted((t, s) for t, s, _ in tags) == [("final/acc_final", 2), ("train/train_loss", 1),
                                                  ("train/val_acc", 2)]


def test_bad_destinations_are_one_line_errors(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        TensorBoardTracker(tmp_path / "file")
    pytest.importorskip("mlflow")
    with pytest.raises(UserError, match="is a file"):
        MLflowTracker(tmp_path / "file")
    assert make_trackers(mlflow=None, tensorboard=None) == []
    with pytest.raises(UserError, match="trial id"):
        TensorBoardTracker(tmp_path / "tb").log_trial({"trial_id": "../up"}, None, None)
