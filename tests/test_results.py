from __future__ import annotations

import ast
import math
from pathlib import Path

import pandas as pd
import pytest

from hgsearch.config import TrialConfig
from hgsearch.errors import UserError
from hgsearch.results import (
    CURVE_TYPES,
    METRIC_TYPES,
    SWEEP_TYPES,
    empty_metrics,
    load_curves,
    load_results,
    row_types,
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


def test_a_corrupt_row_file_is_named_skipped_and_counted(tmp_path):
    write_row(tmp_path, make_row("a", acc_final=0.5))
    (tmp_path / "trials" / "junk.parquet").write_text("junk")
    with pytest.warns(UserWarning, match="junk.parquet"):
        df = load_results(tmp_path)
    assert list(df.trial_id) == ["a"]
    assert [Path(p).name for p, _ in df.attrs["skipped"]] == ["junk.parquet"]
    (tmp_path / "curves").mkdir()
    (tmp_path / "curves" / "junk.parquet").write_bytes(b"PAR1 not really")
    write_curve(tmp_path, "a", [{"phase": "train", "epoch": 1, "val_acc": 0.3}])
    with pytest.warns(UserWarning, match="junk.parquet"):
        curves = load_curves(tmp_path)
    assert list(curves.trial_id) == ["a"] and len(curves.attrs["skipped"]) == 1


# --- the declared schema against real rows --------------------------------------------------

def test_every_column_of_a_real_trial_row_and_curve_is_declared(real_trial):
    _, row, raw = real_trial
    assert row["status"] == "ok" and raw
    assert set(row) - set(row_types()) == set()
    assert {k for r in raw for k in r} - set(CURVE_TYPES) == set()
    # and nothing declared is dead: each metric is one the trial really emits
    assert set(METRIC_TYPES) - set(row) == set()


def _sweep_extra_keys() -> set[str]:
    """Keys the sweep's worker puts into a trial's ``extra`` (read from its source, not ours)."""
    keys: set[str] = set()
    for module in (Path(__file__).parents[1] / "hgsearch" / "search").glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "extra"
                                                    for t in node.targets):
                if isinstance(node.value, ast.Dict):
                    keys |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                    and node.target.id == "extra" and isinstance(node.value, ast.Dict):
                keys |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
                    and node.value.id == "extra" and isinstance(node.ctx, ast.Store) \
                    and isinstance(node.slice, ast.Constant):
                keys.add(node.slice.value)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "update" and isinstance(node.func.value, ast.Name) \
                    and node.func.value.id == "extra":
                keys |= {k.arg for k in node.keywords if k.arg}
    return keys


def test_every_column_a_sweep_adds_is_declared():
    keys = _sweep_extra_keys()
    assert {"sweep", "is_baseline", "optuna_number", "restarts"} <= keys   # the scan finds them
    assert keys - set(SWEEP_TYPES) == set()


def test_every_column_of_a_driver_written_failed_row_is_declared():
    from hgsearch.search.reconcile import failed_row

    row = failed_row({"trial_id": "t0"}, error="boom", attempts=2)
    assert set(row) - set(row_types()) - {"trial_id"} == set()


def test_trial_and_sweep_folders_concatenate_with_stable_dtypes(real_trial, tmp_path):
    folder, _, _ = real_trial
    plain = load_results(folder)
    # a sweep folder as sweep.py writes it: a baseline and a searched trial with its extras
    extras = {"sweep": "demo", "ray_trial_id": "abc", "node_id": "n1", "node_ip": "127.0.0.1",
              "cuda_visible_devices": "", "cpu_threads": 1, "restarts": 0}
    write_row(tmp_path, make_row("baseline", **extras, is_baseline=True, optuna_number=-1,
                                 reg="none", lam=0.0, prune_ratio=0.0, acc_final=0.9))
    write_row(tmp_path, make_row("t0", **extras, is_baseline=False, optuna_number=0,
                                 acc_final=0.8, params_dense=10, kept_channels=[1, 2]))
    sweep = load_results(tmp_path)
    for parts in ([plain, sweep], [sweep, plain], [plain, plain]):
        both = pd.concat(parts, ignore_index=True)
        for name, arrow in row_types().items():
            expected = {"int64": "Int64", "double": "float64", "bool": "boolean",
                        "string": "string"}.get(str(arrow), "object")
            assert str(both[name].dtype) == expected, name
    assert list(plain.columns) == list(sweep.columns)
    assert pd.isna(plain.is_baseline[0]) and pd.isna(plain.optuna_number[0])


def test_a_real_row_holds_null_for_keys_that_do_not_apply(real_trial):
    folder, row, _ = real_trial
    df = load_results(folder)
    assert pd.isna(df.reg_outer[0])                  # reg_levels=1: flat groups
    assert pd.isna(df.image_size[0]) and pd.isna(df.data_dir[0])    # synthetic data
    assert df.reg_levels[0] == 1 and df.reg[0] == "group_l12" and df.lam[0] == row["lam"]
    assert df.numerics[0] == "fp32"     # precision auto on a CPU: no autocast, default layout


def test_results_folder_names_the_files_the_writers_write(tmp_path):
    from hgsearch.results import ResultsFolder

    layout = ResultsFolder(str(tmp_path))
    assert write_row(tmp_path, {"trial_id": "t7", "status": "ok"}) == layout.row("t7")
    assert write_curve(tmp_path, "t7", []) == layout.curve("t7")
    assert layout.row("t7") == tmp_path / "trials" / "t7.parquet"
    assert layout.curve("t7") == tmp_path / "curves" / "t7.parquet"
    assert layout.model("t7") == tmp_path / "models" / "t7.pt"
    assert layout.log("t7") == tmp_path / "logs" / "t7.log"
    assert layout.report == tmp_path / "report" / "index.html"
    assert (layout.selected, layout.bench) == (tmp_path / "selected", tmp_path / "bench")
    assert load_results(layout.root)["trial_id"].tolist() == ["t7"]
