"""A searcher restored from Tune's saved state proposes no config a trial already has.

Tune saves the searcher, with its sampler's random state, now and then; a trial asked after the
last save is an orphan when the driver is killed (R4, adopted on resume). The restored sampler
must not draw that orphan's values again for the next trial (a seeded sampler would: found by
the Slurm resume test, tests/cluster/test_slurm.py). No Ray.
"""

from __future__ import annotations

from hgsearch.search.searcher import make_searcher
from hgsearch.search.space_file import parse_space

SPACE = {"fixed": {"dataset": "synthetic", "arch": "resnet20", "epochs": 1},
         "search": {"lam": {"loguniform": [1.0e-6, 1.0e-2]}},
         "objectives": {"acc_final": "max", "params_ratio": "min"},
         "sampler": {"name": "random", "seed": 0}, "num_samples": 5, "baseline": False}


def test_trials_after_a_restore_do_not_repeat_one_asked_after_the_save(tmp_path):
    sp = parse_space(SPACE, source="s")
    first = make_searcher(sp, name="s", folder=tmp_path)
    asked = [first.suggest(f"a{i}") for i in range(2)]
    first.save(str(tmp_path / "searcher.pkl"))           # Tune's last save
    asked.append(first.suggest("a2"))                    # asked after it; then the driver dies
    again = make_searcher(sp, name="s", folder=tmp_path)
    again.restore(str(tmp_path / "searcher.pkl"))
    resumed = [again.suggest(f"b{i}") for i in range(3)]
    assert [c["trial_id"] for c in resumed] == ["t0002", "t0003", "t0004"]
    assert resumed[0]["lam"] == asked[2]["lam"]          # the orphan keeps its value (R4)
    values = [c["lam"] for c in asked[:2] + resumed]
    assert len(set(values)) == len(values), values       # and no new trial repeats one
