from __future__ import annotations

import math

import pandas as pd
import pytest

from hgsearch.config import TrialConfig
from hgsearch.errors import UserError
from hgsearch.results import (
    METRIC_TYPES,
    empty_metrics,
    load_curves,
    load_results,
    write_curve,
    write_row,
)


def make_row(trial_id: str, status: str = "ok", **metrics) -> dict:
    row = {**TrialConfig(trial_id=trial_id).to_dict(), **empty_metrics(), "status": status}
    row.update(metrics)
    return row


def test_rows_round_trip_with_stable_dtypes(tmp_path):
    write_row(tmp_path, make_row("a", acc_final=0.5, params_dense=100, params_final=40,
                                 kept_channels=[1, 2, 3], started_at="2026-01-01T00:00:01"))
    write_row(tmp_path, make_row("b", status="diverged", error="loss became nan",
                                 acc_final=math.nan, started_at="2026-01-01T00:00:00"))
    df = load_results(tmp_path)
    assert list(df.trial_id) == ["b", "a"]  # sorted by start time
    assert str(df.params_dense.dtype) == "Int64" and str(df.acc_final.dtype) == "float64"
    assert str(df.status.dtype) == "string" and str(df.nesterov.dtype) == "boolean"
    assert pd.isna(df.acc_final[0]) and df.acc_final[1] == 0.5
    assert list(df.kept_channels[1]) == [1, 2, 3]
    assert set(METRIC_TYPES) <= set(df.columns)
    assert set(TrialConfig().to_dict()) <= set(df.columns)
    # two folders concatenate without dtype surprises
    both = pd.concat([df, df], ignore_index=True)
    assert str(both.params_dense.dtype) == "Int64"


def test_rewriting_a_trial_replaces_its_row(tmp_path):
    write_row(tmp_path, make_row("a", status="failed", error="boom"))
    write_row(tmp_path, make_row("a", acc_final=0.9))
    df = load_results(tmp_path)
    assert len(df) == 1 and df.status[0] == "ok"
    assert [p.name for p in (tmp_path / "trials").iterdir()] == ["a.parquet"]  # no temp left


def test_extra_columns_are_kept(tmp_path):
    write_row(tmp_path, {**make_row("a"), "sweep": "demo", "is_baseline": True})
    df = load_results(tmp_path)
    assert df.sweep[0] == "demo" and bool(df.is_baseline[0])


def test_curves(tmp_path):
    write_curve(tmp_path, "a", [{"phase": "train", "epoch": 1, "val_acc": 0.3},
                                {"phase": "finetune", "epoch": 1, "val_acc": float("nan")}])
    curves = load_curves(tmp_path)
    assert list(curves.phase) == ["train", "finetune"] and curves.trial_id.eq("a").all()


def test_bad_folders(tmp_path):
    with pytest.raises(UserError, match="no such results folder"):
        load_results(tmp_path / "nope")
    with pytest.raises(UserError, match="no trials/ inside"):
        load_results(tmp_path)
    (tmp_path / "trials").mkdir()
    assert len(load_results(tmp_path)) == 0
    (tmp_path / "trials" / "junk.parquet").write_text("junk")
    with pytest.raises(UserError, match="junk.parquet"):
        load_results(tmp_path)
