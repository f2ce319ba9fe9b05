"""What front, select and the report say beyond the front: the searched keys, recovery
(acc_dense, acc_pruned, acc_final), latency spread and the warnings (analysis.cautions)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
import pytest

from hgsearch.analysis.cautions import (
    FRONT_MIN_TRIALS,
    IMPORTANCE_MIN_TRIALS,
    front_caution,
    importance_caution,
    trial_cautions,
)
from hgsearch.analysis.folder import front_of, searched_keys_of
from hgsearch.analysis.report import render_report
from hgsearch.cli import main
from tests.results_fixtures import write_results


def honest_folder(folder, *, sweep_keys=None):
    """The fixture's results with recovery figures, interleaved latencies, one trial at chance
    (t05 at 12% of 10 classes) and, with ``sweep_keys``, a sweep.json searching those keys."""
    df = write_results(folder, models=False)
    df["num_classes"] = 10
    df["acc_dense"] = 0.95
    df["acc_pruned"] = np.linspace(0.1, 0.3, len(df))
    df.loc[df["trial_id"] == "t05", "acc_final"] = 0.12
    df["mix"] = np.linspace(0.0, 1.0, len(df))
    for tag in ("b1", "bN"):
        df[f"latency_dense_{tag}_ms"] = 2.0
        df[f"latency_final_{tag}_ms"] = np.linspace(1.9, 1.0, len(df))   # t00, t01 slow
        df[f"latency_dense_{tag}_iqr_ms"] = 0.2
        df[f"latency_final_{tag}_iqr_ms"] = 0.2
        df[f"latency_{tag}_significant"] = (2.0 - df[f"latency_final_{tag}_ms"]) > 0.25
    for _, row in df.iterrows():
        pd.DataFrame([row]).to_parquet(folder / "trials" / f"{row['trial_id']}.parquet")
    if sweep_keys is not None:
        (folder / "sweep.json").write_text(json.dumps({
            "name": "demo", "space": {"search": {k: {"choice": [1, 2]} for k in sweep_keys}},
            "objectives": [{"name": "acc_final", "direction": "max"},
                           {"name": "params_ratio", "direction": "min"}]}))
    return df


def test_front_shows_the_sweeps_searched_keys_and_no_other(tmp_path):
    honest_folder(tmp_path, sweep_keys=["lam", "mix", "reg_solver"])
    front = front_of(tmp_path)
    assert front.keys == ["lam", "mix", "reg_solver"]
    cols = list(front.table.columns)
    assert {"lam", "mix", "reg_solver"} <= set(cols)
    # not searched here, though the old fixed list showed them
    assert not {"score_samples", "reg_levels", "reg_outer", "prune_ratio"} & set(cols)
    assert {"acc_dense %", "acc_pruned %", "acc_final %"} <= set(cols)


def test_without_a_sweep_json_the_keys_are_those_that_vary(tmp_path):
    df = honest_folder(tmp_path)
    assert searched_keys_of(tmp_path, df) == ["lam", "mix", "prune_ratio"]


def test_cautions_name_the_trial_at_chance_and_the_small_front(tmp_path):
    honest_folder(tmp_path, sweep_keys=["lam"])
    front = front_of(tmp_path)
    text = "\n".join(front.cautions)
    assert f"rests on 5 candidate trial(s), under {FRONT_MIN_TRIALS}" in text
    assert "t05" in text and "at chance" in text


def test_front_and_select_print_recovery_keys_and_warnings(tmp_path, capsys):
    honest_folder(tmp_path, sweep_keys=["lam", "mix"])
    assert main(["front", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "searched keys: lam, mix" in out and "acc_pruned %" in out
    assert "warning: the front rests on 5 candidate trial(s)" in out
    write_results(tmp_path / "m")   # select needs model files; a folder of its own
    honest = honest_folder(tmp_path / "m")
    assert main(["select", str(tmp_path / "m"), "--rule", "budget", "--budget", "0.5",
                 "--no-onnx"]) == 0
    out = capsys.readouterr().out
    chosen = honest[honest["trial_id"] == "t02"].iloc[0]
    assert (f"right after pruning {100 * chosen['acc_pruned']:.2f}%" in out
            and "dense 95.00%" in out)
    assert "warning: the choice rests on 5 candidate trial(s)" in out


def figure_data(page: str, name: str) -> list[dict]:
    """The traces of the page's figure ``name`` as the browser gets them (Plotly.newPlot's
    data argument), numpy arrays decoded from plotly's typed-array form."""
    start = page.index("Plotly.newPlot(", page.index(f'<figure class="plot" data-plot="{name}"'))
    start = page.index("[", page.index(f'"plot-{name}"', start))
    traces, _ = json.JSONDecoder().raw_decode(page, start)

    def decoded(value):
        if isinstance(value, dict) and set(value) == {"dtype", "bdata"}:
            return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        if isinstance(value, dict):
            return {k: decoded(v) for k, v in value.items()}
        return value
    return [decoded(t) for t in traces]


def test_report_draws_recovery_latency_spread_and_warnings(tmp_path):
    df = honest_folder(tmp_path, sweep_keys=["lam", "mix"])
    df["latency_final_b1_iqr_ms"] = np.linspace(0.1, 0.5, len(df))   # each trial its own
    page = render_report(df, results_dir=tmp_path, keys=["lam", "mix"])
    assert 'data-plot="recovery"' in page and 'data-plot="latency_pair_b1"' in page
    # The spread as drawn: each trial's marker at its median with a bar of half its IQR either
    # side (plotly.js itself holds the string "error_y", so the page's text proves nothing).
    by_id = df.set_index("trial_id")
    traces = {t["name"]: t for t in figure_data(page, "latency_pair_b1")}
    assert set(traces) == {"dense", "compact"}
    for name, column in (("dense", "dense"), ("compact", "final")):
        trace, rows = traces[name], by_id.loc[traces[name]["x"]]
        assert list(trace["x"]) == list(df.trial_id[df.status == "ok"])   # the usable ones
        np.testing.assert_allclose(trace["y"], rows[f"latency_{column}_b1_ms"])
        bar = trace["error_y"]
        assert bar["type"] == "data" and bar["visible"] is True and "arrayminus" not in bar
        np.testing.assert_allclose(bar["array"], rows[f"latency_{column}_b1_iqr_ms"] / 2)
    assert "<h2>Warnings</h2>" in page and "t05: acc_final 12.0% is at chance" in page
    assert "parameter importance rests on" in page
    assert "t01: latency_final_b1_ms differs from the dense network" in page   # 1.77 vs 2.0
    assert "t00: latency" not in page    # the baseline: nothing removed, nothing to show


def test_thresholds():
    assert front_caution(FRONT_MIN_TRIALS) is None and front_caution(FRONT_MIN_TRIALS - 1)
    many = pd.DataFrame({"dense_key": [f"k{i % 12}" for i in range(IMPORTANCE_MIN_TRIALS)]})
    assert importance_caution(many) is None
    shared = pd.DataFrame({"dense_key": [f"k{i % 2}" for i in range(40)]})   # 2 networks
    assert "from 2 dense network(s)" in importance_caution(shared)
    rows = pd.DataFrame({"trial_id": ["a", "b"], "params_ratio": [0.5, 0.5],
                         "latency_b1_significant":
                         pd.array([False, pd.NA], dtype="boolean")})
    assert trial_cautions(rows) == ["a: latency_final_b1_ms differs from the dense network's "
                                    "by less than the timings' spread (IQR): no speed "
                                    "difference shown"]


@pytest.mark.parametrize("n", [6, 10, 20])
def test_the_front_share_behind_the_threshold_is_the_harmonic_number(n):
    """The docstring's figure: n random points in 2-D have H_n non-dominated ones on average."""
    rng = np.random.default_rng(0)
    from hgsearch.analysis.front import nondominated_mask

    mean = np.mean([nondominated_mask(rng.random((n, 2))).sum() for _ in range(4000)])
    assert mean == pytest.approx(sum(1 / k for k in range(1, n + 1)), rel=0.03)
