"""The demo sweep as shipped (search_spaces/demo.yaml), run for real: what the README and the
space file promise of it. Minutes of training, so marked slow (``make test-slow``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hgsearch.search.driver import run_sweep

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
# In fp32 (a CPU without native bf16) the sweep alone took 10.5 min on a 2-core Zen 3 VM, and
# make test-slow runs another test file beside it.
@pytest.mark.timeout(2700)
def test_the_demo_front_holds_a_half_size_model_within_two_points(tmp_path):
    result = run_sweep(REPO / "search_spaces" / "demo.yaml", name="demo", results=tmp_path,
                       num_cpus=2, log=lambda _line: None)
    assert result.complete
    rows = result.rows.set_index("trial_id")
    assert (rows.status == "ok").all(), rows[["status", "error"]]
    base = rows.loc["baseline", "acc_final"]
    controls = rows[rows.control.notna()]
    searched = rows.drop(index=["baseline", *controls.index])
    # The promise: a pruned model with at most half the parameters within 2 points.
    good = searched[(searched.params_ratio <= 0.5) & (searched.acc_final >= base - 0.02)]
    assert len(good), searched[["acc_final", "params_ratio"]]
    # The economy: 6 rows from 2 trained networks (each ladder's siblings reused it) and the
    # baseline's own.
    assert searched.dense_key.nunique() == 2
    assert rows.drop(index=controls.index).dense_key.nunique() == 3
    assert int((~searched.dense_reused.astype(bool)).sum()) == 2
    assert (searched.loc[searched.dense_reused.astype(bool), "images_train"] == 0).all()
    store = tmp_path / "demo" / "dense"
    assert {p.name for p in store.iterdir()} == set(rows.dense_key.dropna())   # 3, no more
    assert not list(store.glob("*/claim"))
    # The controls: the knee's two, each once, at its widths or its parameter count.
    assert sorted(controls.control) == ["scratch", "uniform"]
    knee = rows.loc[controls.control_of.iloc[0]]
    assert (controls.control_of == knee.name).all()
    scratch = controls[controls.control == "scratch"].iloc[0]
    uniform = controls[controls.control == "uniform"].iloc[0]
    assert list(scratch.widths_dense) == list(knee.kept_channels)
    assert abs(uniform.params_dense / knee.params_final - 1) <= 0.01
