"""Early stopping of the dense phase: the rungs, the rule on hand-made curves, and a live trial
stopped against a reference entry, then the same stop replayed from the store."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from hgsearch.config import make_config
from hgsearch.data import load_dataset
from hgsearch.dense_store import DenseStore, dense_key, reference_config
from hgsearch.early_stop import Rungs, decide, reference_curve, rung_epochs
from hgsearch.models import load_model
from hgsearch.results import load_curves, load_results
from hgsearch.runtime import resolve_runtime
from hgsearch.trial import run_trial


@pytest.mark.parametrize(("epochs", "rungs", "expected"), [
    (160, 2, [40, 80]),
    (160, 3, [20, 40, 80]),
    (5, 2, [1, 2]),          # round(1.25), round(2.5) (half to even)
    (4, 10, [1, 2]),         # 4/2**k under 0.5 rounds to 0: dropped; duplicates dropped
    (2, 1, [1]),
    (1, 3, []),              # no rung before the last epoch
])
def test_rungs_halve_the_epochs(epochs, rungs, expected):
    assert rung_epochs(epochs, rungs) == expected


def _curve(accs: dict[int, float]) -> list[dict]:
    return [{"phase": "train", "epoch": e, "val_acc": a} for e, a in sorted(accs.items())]


CFG = make_config({"early_stop": True, "epochs": 8, "early_stop_rungs": 2,
                   "early_stop_ratio": 0.5, "reg": "group_l12", "lam": 1e-3})   # rungs 2, 4
REFERENCE = _curve({1: 0.3, 2: 0.4, 3: 0.5, 4: 0.6, 8: 0.9})


@pytest.mark.parametrize(("accs", "expected"), [
    ({1: 0.0, 2: 0.21, 3: 0.0, 4: 0.31}, None),     # above half the reference at both rungs
    ({1: 0.1, 2: 0.19, 4: 0.9}, 2),                 # 0.19 < 0.5 x 0.4 at the first rung
    ({2: 0.2, 4: 0.29}, 4),                         # exactly half is not below; 0.29 < 0.30
    ({1: 0.0, 3: 0.0}, None),                       # never at a rung: off-rung epochs ignored
])
def test_decide_stops_at_the_first_rung_below_the_ratio(accs, expected):
    assert decide(_curve(accs), REFERENCE, CFG) == expected


@pytest.mark.parametrize("change", [{"early_stop": False}, {"reg": "none"}, {"lam": 0.0}])
def test_an_unregularized_or_unasked_trial_is_never_stopped(change):
    assert decide(_curve({2: 0.0, 4: 0.0}), REFERENCE, CFG.replace(**change)) is None


def test_no_reference_never_stops_and_a_partial_reference_stops_only_where_it_reached():
    assert decide(_curve({2: 0.0}), None, CFG) is None
    assert decide(_curve({2: 0.3, 4: 0.0}), _curve({2: 0.4}), CFG) is None
    # replay sees the reference as the live check did at each rung
    seen = {2: None, 4: REFERENCE}
    assert Rungs(CFG, seen.__getitem__).replay(_curve({2: 0.0, 4: 0.0})).epoch == 4


def test_a_reference_still_training_is_waited_for(tmp_path):
    store = DenseStore(tmp_path, poll_s=0.02)
    assert store.claim("ref")             # the reference's trainer holds it, at epoch 1
    store.write_curve("ref", _curve({1: 0.3}))

    def later() -> None:
        time.sleep(0.3)
        store.write_curve("ref", _curve({1: 0.3, 2: 0.4}))

    threading.Thread(target=later).start()
    lines: list[str] = []
    assert [r["epoch"] for r in reference_curve(store, "ref", 2, lines.append)] == [1, 2]
    assert len(lines) == 1 and "waiting" in lines[0]
    store.release("ref")
    assert reference_curve(store, "ref", 3, lines.append) is None   # nobody trains it: no stop


def test_a_hopeless_trial_stops_at_the_rung_and_a_reused_entry_stops_the_same(
        tiny, tmp_path, one_thread, trained_epochs):
    keys = {**tiny, "epochs": 4, "reg": "group_l12", "lam": 10.0, "early_stop": True,
            "early_stop_ratio": 0.5, "early_stop_rungs": 2}                  # rungs 1, 2
    store = DenseStore(tmp_path / "dense")
    cfg = make_config(keys)
    runtime = resolve_runtime("cpu")
    data = load_dataset(cfg)
    # The reference entry: the unregularized network's curve (hand-made: 95% at every epoch).
    store.write_curve(dense_key(reference_config(cfg), data, runtime),
                      _curve({e: 0.95 for e in range(1, 5)}))

    live = run_trial({**keys, "trial_id": "live"}, log=None, dense_store=store)
    assert trained_epochs == [1]
    assert live["status"] == "stopped" and live["stopped_epoch"] == 1
    assert "early stop at epoch 1" in live["error"]
    assert live["acc_final"] is None and live["params_ratio"] is None
    assert live["images_train"] == 250                     # one epoch of 5 x 50 images
    meta = store.meta(live["dense_key"])
    assert meta["status"] == "stopped" and meta["epoch"] == 1
    rows = load_results(keys["out_dir"]).set_index("trial_id")
    assert rows.loc["live", "status"] == "stopped" and rows.loc["live", "stopped_epoch"] == 1

    before = list(trained_epochs)
    again = run_trial({**keys, "trial_id": "again", "prune_ratio": 0.3}, log=None,
                      dense_store=store)
    assert trained_epochs == before                        # stopped without training
    assert again["dense_reused"] and again["images_train"] == 0
    same = {"trial_id", "prune_ratio", "hostname", "started_at", "finished_at", "dense_reused",
            "seconds_train_saved", "images_train"}
    assert [k for k in live if k not in same and not k.startswith("seconds_")
            and live[k] != again[k]] == []         # every other column, status to error
    curves = load_curves(keys["out_dir"])
    cols = ["phase", "epoch", "train_loss", "val_acc"]
    assert (curves[curves.trial_id == "again"][cols].to_dict("records")
            == curves[curves.trial_id == "live"][cols].to_dict("records"))


@pytest.mark.slow   # tens of seconds: make test-slow (CI runs it)
def test_a_trial_without_early_stop_trains_on_from_a_stopped_entry(
        tiny, tmp_path, one_thread, trained_epochs):
    keys = {**tiny, "epochs": 3, "reg": "group_l12", "lam": 10.0, "early_stop_rungs": 1,
            "early_stop_ratio": 1.0}                                         # rung 2
    store = DenseStore(tmp_path / "dense")
    cfg = make_config({**keys, "early_stop": True})
    store.write_curve(dense_key(reference_config(cfg), load_dataset(cfg), resolve_runtime("cpu")),
                      _curve({e: 1.0 for e in range(1, 4)}))
    stopped = run_trial({**keys, "early_stop": True, "trial_id": "s"}, log=None,
                        dense_store=store)
    assert stopped["status"] == "stopped" and stopped["stopped_epoch"] == 2
    assert trained_epochs == [1, 2]
    on = run_trial({**keys, "trial_id": "on"}, log=None, dense_store=store)
    assert trained_epochs == [1, 2, 3]     # only the epoch after the stop
    assert on["status"] == "ok" and not on["dense_reused"] and on["images_train"] == 250
    plain = run_trial({**keys, "trial_id": "plain"}, log=None)
    for k in ("acc_dense", "test_acc_dense", "acc_final", "test_acc_final", "params_final",
              "zero_group_fraction"):
        assert on[k] == plain[k], k
    a = load_model(f"{keys['out_dir']}/models/on.pt").state_dict()
    b = load_model(f"{keys['out_dir']}/models/plain.pt").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_early_stop_keys_are_inapplicable_where_they_cannot_act():
    from hgsearch.inapplicable import inapplicable_keys

    assert {"early_stop_ratio", "early_stop_rungs"} <= inapplicable_keys({"early_stop": False})
    assert "early_stop" in inapplicable_keys({"reg": "none"})
    assert "early_stop" in inapplicable_keys({"lam": 0.0})
    assert not {"early_stop", "early_stop_ratio"} & inapplicable_keys({"early_stop": True})
