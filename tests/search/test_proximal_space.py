"""The shipped proximal space's lam range reaches the region where filters become exactly zero:
the dense phase trained on the space's own recipe (its data, epochs, batch and lr), each searched
family at the range's top zeroes at least a tenth of the prunable filters."""

from __future__ import annotations

from pathlib import Path

import pytest

from hgsearch.bench import lam_reach
from hgsearch.search.space_file import load_space

pytestmark = pytest.mark.usefixtures("one_thread")
SPACE = Path(__file__).resolve().parents[2] / "search_spaces" / "demo_proximal.yaml"


def _params():
    space = load_space(SPACE)
    return space, {p.key: p for p in space.params}


def test_the_space_runs_the_proximal_solver_on_the_families_that_zero_filters():
    space, params = _params()
    assert space.fixed["reg_solver"] == "proximal" and space.fixed["lam_scale"] == "none"
    assert "exclusive" not in params["reg"].choices          # it zeroes none (the solvers guide)
    assert "l1" not in params["reg"].choices and space.fixed["mix"] == 1.0   # no L1 threshold
    assert params["lam"].kind == "loguniform" and params["lam"].low < params["lam"].high


@pytest.mark.slow   # a minute or two each: make test-slow (CI runs it)
@pytest.mark.parametrize("reg", ["group_lasso", "group_l12"])
def test_the_top_of_the_lam_range_zeroes_filters(reg):
    space, params = _params()
    assert reg in params["reg"].choices
    f = space.fixed
    recipe = {k: f[k] for k in ("reg_levels", "reg_grouping", "mix", "lr", "val_fraction")}
    row = lam_reach.zero_share(arch=f["arch"], reg=reg, lam=params["lam"].high,
                               lam_scale=f["lam_scale"], epochs=f["epochs"],
                               train_size=f["synthetic_train_size"],
                               batch_size=f["batch_size"], extra=recipe)
    assert row["zero_filter_fraction"] >= lam_reach.ONSET_SHARE
