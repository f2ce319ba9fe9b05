"""Shared dense training: a reused network gives the same trial, trainings happen once, stale
claims are taken over, and the key is exactly the metadata's dense keys."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import hgsearch.phases as trial_phases
from hgsearch import inapplicable
from hgsearch.config import FIELDS, dense_keys, make_config
from hgsearch.dense_store import DenseStore, data_fingerprint, dense_key, normalized_keys
from hgsearch.errors import UserError
from hgsearch.runtime import resolve_runtime
from hgsearch.trial import run_trial
from tests.reuse_checks import curve_of, differing, model_of

ROOT = Path(__file__).resolve().parents[1]
@pytest.mark.slow   # tens of seconds: make test-slow (CI runs it)
def test_a_reused_network_gives_the_row_curve_and_model_of_a_fresh_training(
        tiny, tmp_path, one_thread, trained_epochs):
    keys = {**tiny, "epochs": 2, "prune_ratio": 0.5}
    out = keys["out_dir"]
    plain = run_trial({**keys, "trial_id": "plain"}, log=None)        # no store at all
    store = DenseStore(tmp_path / "dense")
    trained = run_trial({**keys, "trial_id": "trained"}, log=None, dense_store=store)
    assert trained_epochs == [1, 2, 1, 2]
    reused = run_trial({**keys, "trial_id": "reused"}, log=None, dense_store=store)
    assert trained_epochs == [1, 2, 1, 2]          # nothing trained for the third
    assert (trained["dense_reused"], reused["dense_reused"]) == (False, True)
    saved = store.meta(reused["dense_key"])["seconds_train"]
    assert reused["seconds_train_saved"] == saved > 0 and trained["seconds_train_saved"] == 0
    assert (trained["images_train"], reused["images_train"]) == (2 * 250, 0)   # 270 -> 5 x 50
    assert trained["dense_key"] == reused["dense_key"] and len(reused["dense_key"]) == 16
    assert plain["dense_key"] is None
    for other in (trained, reused):
        assert differing(plain, other) == []
        assert curve_of(out, other["trial_id"]) == curve_of(out, "plain")
        a, b = model_of(out, "plain"), model_of(out, other["trial_id"])
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert reused["images_finetune"] == trained["images_finetune"] == 250
    # loss_increase: score_samples x (every prunable filter + the unmasked pass)
    widths = sum(plain["widths_dense"])
    assert plain["images_score"] == trained["images_score"] == 32 * (widths + 1)
    assert (trained["scores_reused"], reused["scores_reused"], reused["images_score"]) == (
        False, True, 0)     # the third reuses the second's scores (score_cache.py)


@pytest.mark.slow   # tens of seconds: make test-slow (CI runs it)
def test_a_ladder_value_reuses_the_network_and_scores_like_a_fresh_trial(
        tiny, tmp_path, one_thread, trained_epochs):
    store = DenseStore(tmp_path / "dense")
    run_trial({**tiny, "trial_id": "r3", "prune_ratio": 0.3}, log=None, dense_store=store)
    ladder = run_trial({**tiny, "trial_id": "r7", "prune_ratio": 0.7}, log=None,
                       dense_store=store)
    fresh = run_trial({**tiny, "trial_id": "f7", "prune_ratio": 0.7}, log=None)
    assert trained_epochs == [1, 1] and ladder["dense_reused"]
    assert differing(fresh, ladder) == []


def test_concurrent_trials_with_one_network_train_it_once(tiny, tmp_path, trained_epochs):
    store = DenseStore(tmp_path / "dense", poll_s=0.05)
    rows: dict[str, dict] = {}

    def one(trial_id: str, ratio: float) -> None:
        rows[trial_id] = run_trial({**tiny, "trial_id": trial_id, "prune_ratio": ratio,
                                    "epochs": 2}, log=None, dense_store=store)

    threads = [threading.Thread(target=one, args=(f"c{i}", r))
               for i, r in enumerate((0.3, 0.5, 0.7))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert trained_epochs == [1, 2]
    assert sorted(r["dense_reused"] for r in rows.values()) == [False, True, True]
    assert len({r["dense_key"] for r in rows.values()}) == 1
    assert {r["status"] for r in rows.values()} == {"ok"}
    assert not (Path(store.root) / rows["c0"]["dense_key"] / "claim").exists()


_KILLED_TRAINER = """
import sys, time, torch
import hgsearch.dense_store as ds
from hgsearch.trial import run_trial
torch.set_num_threads(1)
marker = sys.argv[2]
original = ds.DenseStore.heartbeat
def heartbeat(self, key, epoch=0):   # after epoch 1: say so, then hang until killed
    original(self, key, epoch)
    open(marker, "w").write(key)
    time.sleep(600)
ds.DenseStore.heartbeat = heartbeat
keys = eval(sys.argv[1])
run_trial(keys, log=None, dense_store=ds.DenseStore(keys["out_dir"] + "/../dense"))
"""


@pytest.mark.slow   # tens of seconds: make test-slow (CI runs it)
def test_a_killed_trainers_claim_is_taken_over_and_nothing_is_lost_or_doubled(
        tiny, tmp_path, one_thread, trained_epochs):
    keys = {**tiny, "epochs": 2}
    marker = tmp_path / "claimed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_TRAINER,
                             repr({**keys, "trial_id": "killed"}), str(marker)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), "the trainer never finished its first epoch"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    key = marker.read_text()
    folder = tmp_path / "dense" / key
    store = DenseStore(tmp_path / "dense", poll_s=0.05)
    assert json.loads((folder / "claim").read_text())["pid"] == proc.pid
    assert [r["epoch"] for r in store.curve(key)] == [1]     # the dead trainer's live curve
    assert store.meta(key) is None

    taken = run_trial({**keys, "trial_id": "taker"}, log=None, dense_store=store)
    assert trained_epochs == [1, 2] and not taken["dense_reused"]
    assert sorted(p.name for p in folder.iterdir()) == ["curve.json", "meta.json", "scores",
                                                           "state.pt"]
    assert [r["epoch"] for r in store.curve(key)] == [1, 2]
    assert store.meta(key)["status"] == "trained"
    plain = run_trial({**keys, "trial_id": "plain"}, log=None)
    assert differing(plain, taken) == []
    again = run_trial({**keys, "trial_id": "again"}, log=None, dense_store=store)
    assert trained_epochs == [1, 2, 1, 2] and again["dense_reused"]   # plain's, not again's


def _trained_entry(tiny, store):
    """A 2-epoch trial trained into ``store``: its keys, its row and the entry."""
    keys = {**tiny, "epochs": 2}
    row = run_trial({**keys, "trial_id": "first"}, log=None, dense_store=store)
    return keys, row, store.entry(row["dense_key"])


def _in_thread(target) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)   # daemon: a hung one fails, no more
    thread.start()
    return thread


@pytest.mark.slow   # tens of seconds: make test-slow (CI runs it)
def test_a_waiter_reads_the_network_only_when_the_entry_changes(
        tiny, tmp_path, one_thread, trained_epochs):
    store = DenseStore(tmp_path / "dense", poll_s=0.01)
    keys, first, entry = _trained_entry(tiny, store)
    key = first["dense_key"]
    # A stopped entry that another trainer (a live claim) is training on from epoch 1.
    store.save(key, entry.state, status="stopped", epoch=1, seconds_train=1.0, keys={})
    trainer = DenseStore(tmp_path / "dense")
    assert trainer.claim(key)
    reads, read = [], store._io.read
    store._io.read = lambda rel: (reads.append(rel) if rel.endswith("state.pt") else None,
                                  read(rel))[1]
    rows = {}
    waiter = _in_thread(lambda: rows.update(run_trial({**keys, "trial_id": "waiter"},
                                                      log=None, dense_store=store)))
    deadline = time.monotonic() + 60
    while not reads and time.monotonic() < deadline:     # the waiter reached the store
        time.sleep(0.01)
    time.sleep(0.5)                                        # some 50 polls of the waiter
    assert waiter.is_alive() and len(reads) == 1           # the stopped entry, read once
    trainer.save(key, entry.state, status="trained", epoch=2, seconds_train=2.0, keys={})
    trainer.release(key)
    waiter.join(60)
    assert rows["dense_reused"] and trained_epochs == [1, 2]
    assert len(reads) == 2                                 # and the trained one, once


@pytest.mark.slow   # tens of seconds: make test-slow (CI runs it)
@pytest.mark.parametrize("damage", ["cut-short", "unreadable"])
def test_an_entry_whose_commit_was_cut_short_is_trained_over_not_waited_on(
        tiny, tmp_path, one_thread, trained_epochs, damage):
    store = DenseStore(tmp_path / "dense", poll_s=0.01)
    keys, first, entry = _trained_entry(tiny, store)
    key = first["dense_key"]
    if damage == "cut-short":   # state.pt of a newer commit under the old meta.json
        meta = tmp_path / "dense" / key / "meta.json"
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "status": "stopped",
                                    "epoch": 1}))
    else:                       # a node lost while the file's blocks were still in its cache
        (tmp_path / "dense" / key / "state.pt").write_bytes(b"")
    assert store.entry(key) is None
    rows = {}
    retrain = _in_thread(lambda: rows.update(run_trial({**keys, "trial_id": "again"},
                                                       log=None, dense_store=store)))
    retrain.join(120)
    assert not retrain.is_alive(), "the trial kept looking at the damaged entry"
    assert trained_epochs == [1, 2, 1, 2] and not rows["dense_reused"]
    assert store.entry(key).status == "trained" and store.holder(key) is None
    assert differing(first, rows) == []          # as the first, fresh training


@pytest.mark.slow   # tens of seconds: make test-slow (CI runs it)
def test_a_trial_waiting_on_the_retraining_of_a_damaged_entry_reuses_it(
        tiny, tmp_path, one_thread, trained_epochs):
    """The retraining commits the same (trained, epochs) as the entry it replaces: the waiter
    must still see that it changed, or it trains the network a third time."""
    store = DenseStore(tmp_path / "dense", poll_s=0.01)
    keys, first, _ = _trained_entry(tiny, store)
    (tmp_path / "dense" / first["dense_key"] / "state.pt").write_bytes(b"")
    rows = {}
    retrainer = DenseStore(tmp_path / "dense", poll_s=0.01)
    claimed = threading.Event()
    claim = retrainer.claim
    retrainer.claim = lambda key: (ok := claim(key), ok and claimed.set())[0]
    trainer = _in_thread(lambda: rows.update(a=run_trial({**keys, "trial_id": "a"}, log=None,
                                                         dense_store=retrainer)))
    assert claimed.wait(60)                          # "a" retrains; "b" comes while it does
    waiter = _in_thread(lambda: rows.update(b=run_trial({**keys, "trial_id": "b"}, log=None,
                                                        dense_store=store)))
    trainer.join(120)
    waiter.join(120)
    assert trained_epochs == [1, 2, 1, 2]            # the first training and one retraining
    assert (rows["a"]["dense_reused"], rows["b"]["dense_reused"]) == (False, True)
    assert differing(first, rows["b"]) == []


def test_a_reuser_keeps_the_images_it_trained_itself_before_a_resume(tiny, tmp_path,
                                                                     one_thread):
    """A trial resumed from its own checkpoint (epoch 1 trained, its row says so) that finds
    the network stored meanwhile reuses it: the images it trained were still processed."""
    from hgsearch.data import load_dataset
    from hgsearch.models import build_model
    from hgsearch.shared_dense import SharedDense

    store = DenseStore(tmp_path / "dense")
    keys, first, _ = _trained_entry(tiny, store)
    cfg = make_config({**keys, "trial_id": "resumed"})
    data = load_dataset(cfg)
    shared = SharedDense(store, cfg, data, resolve_runtime("cpu"), log=lambda _m: None)
    row = {"seconds_train": 1.0, "images_train": first["images_train"] // 2}
    shared.run(lambda **_: pytest.fail("trained although stored"),
               model=build_model(cfg.arch, data.num_classes), gen=torch.Generator(), curve=[],
               row=row, first=2, opt_state=None, every=lambda *_: None, epoch_images=250)
    assert row["dense_reused"] and row["images_train"] == first["images_train"] // 2 > 0


def test_a_training_that_crashes_lets_its_claim_go_and_stores_nothing(tiny, tmp_path,
                                                                     monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("node lost")

    monkeypatch.setattr(trial_phases, "train", crash)
    store = DenseStore(tmp_path / "dense")
    with pytest.raises(RuntimeError, match="node lost"):
        run_trial({**tiny, "trial_id": "crash"}, log=None, dense_store=store)
    folders = list((tmp_path / "dense").iterdir()) if (tmp_path / "dense").exists() else []
    assert all(not (f / "claim").exists() and not (f / "meta.json").exists() for f in folders)


def test_a_network_that_diverged_is_stored_and_not_trained_again(tiny, tmp_path, one_thread,
                                                                  monkeypatch):
    trainings, train = [], trial_phases.train

    def counting(*args, **kwargs):
        if kwargs.get("phase") == "train":
            trainings.append(kwargs.get("start_epoch", 1))
        return train(*args, **kwargs)

    monkeypatch.setattr(trial_phases, "train", counting)
    keys = {**tiny, "epochs": 2, "lr": 1.0e6}
    plain = run_trial({**keys, "trial_id": "plain"}, log=None)           # no store at all
    store = DenseStore(tmp_path / "dense")
    first = run_trial({**keys, "trial_id": "first"}, log=None, dense_store=store)
    again = run_trial({**keys, "trial_id": "again"}, log=None, dense_store=store)
    assert len(trainings) == 2                       # the third trained nothing
    assert plain["status"] == first["status"] == again["status"] == "diverged"
    assert plain["error"] == again["error"] and "loss became" in again["error"]
    assert (first["dense_reused"], again["dense_reused"]) == (False, True)
    assert differing(plain, first) == [] and differing(plain, again) == []
    assert curve_of(keys["out_dir"], "again") == curve_of(keys["out_dir"], "plain")
    key = first["dense_key"]
    assert store.entry(key).status == "diverged" and store.holder(key) is None


def test_a_claim_is_exclusive_and_goes_stale_by_heartbeat_age(tmp_path):
    store = DenseStore(tmp_path, stale_s=60, heartbeat_s=0.05)
    assert store.claim("k") and not store.claim("k")       # this process holds it
    assert store.holder("k")["pid"] == os.getpid()
    store.release("k")
    assert store.holder("k") is None and store.claim("k")
    store.release("k")
    # another host's claim whose heartbeat is older than stale_s: abandoned
    old = {"host": "elsewhere", "pid": 1, "time": time.time() - 61, "token": "x", "epoch": 3}
    (tmp_path / "k" / "claim").write_text(json.dumps(old))
    assert store.holder("k") is None and not (tmp_path / "k" / "claim").exists()
    fresh = {**old, "time": time.time()}
    (tmp_path / "k" / "claim").write_text(json.dumps(fresh))
    assert store.holder("k")["host"] == "elsewhere" and not store.claim("k")


def test_a_dead_pid_means_a_dead_trainer_only_in_our_pid_namespace(tmp_path):
    store = DenseStore(tmp_path, stale_s=60)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()                                      # a PID no process of ours has now
    ours = os.readlink("/proc/self/ns/pid")
    claim = {"host": socket.gethostname(), "pid": gone.pid, "time": time.time(), "token": "x"}
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "claim").write_text(json.dumps({**claim, "pidns": "pid:[1]"}))
    assert store.holder("k")["pid"] == gone.pid      # another container's live trainer
    (tmp_path / "k" / "claim").write_text(json.dumps({**claim, "pidns": ours}))
    assert store.holder("k") is None                 # ours, and dead: taken over
    assert store.claim("k") and json.loads((tmp_path / "k" / "claim").read_text())["pidns"] == ours
    store.release("k")


def test_the_heartbeat_keeps_a_claim_fresh_between_epochs(tmp_path):
    store = DenseStore(tmp_path, stale_s=60, heartbeat_s=0.05)
    assert store.claim("k")
    first = store.holder("k")["time"]
    time.sleep(0.3)
    assert store.holder("k")["time"] > first
    store.release("k")


def test_a_released_claim_is_not_written_back_by_a_heartbeat_under_way(tmp_path, monkeypatch):
    """A beat that read the claim (ours) just before the release must not rewrite it after:
    the claim would outlive its trainer, and waiters would wait for it to go stale."""
    store = DenseStore(tmp_path, stale_s=60, heartbeat_s=0.05)
    write = store._io.write

    def slow_beat(rel, data):
        if threading.current_thread().name.startswith("dense-heartbeat"):
            time.sleep(0.3)                          # a slow store, in the middle of a beat
        write(rel, data)

    monkeypatch.setattr(store._io, "write", slow_beat)
    assert store.claim("k")
    time.sleep(0.15)
    store.release("k")
    time.sleep(0.5)
    assert not (tmp_path / "k" / "claim").exists() and store.holder("k") is None


def test_a_claim_renamed_aside_a_moment_keeps_its_heartbeat(tmp_path):
    """A stale check renames a claim aside and puts it back when it was fresh after all; the
    trainer's heartbeat must not take the gap for a takeover and stop for good."""
    store = DenseStore(tmp_path, stale_s=60, heartbeat_s=0.05)
    assert store.claim("k")
    claim = tmp_path / "k" / "claim"
    aside = claim.with_name(".claim.aside")
    os.rename(claim, aside)
    time.sleep(0.3)                                  # beats find no claim meanwhile
    os.link(aside, claim)
    aside.unlink()
    before = store.holder("k")["time"]
    time.sleep(0.3)
    assert store.holder("k")["time"] > before        # still beating
    assert any(t.name == "dense-heartbeat-k" for t in threading.enumerate())
    store.release("k")


def test_a_uri_store_keeps_entries_and_claims(tmp_path):
    store = DenseStore(f"file://{tmp_path}/uri")
    assert store.claim("k") and not store.claim("k")
    store.write_curve("k", [{"phase": "train", "epoch": 1, "val_acc": 0.5}])
    store.save("k", {"curve": store.curve("k"), "model": {}}, status="trained", epoch=1,
               seconds_train=2.0, keys={})
    store.release("k")
    entry = store.entry("k")
    assert entry.status == "trained" and entry.seconds_train == 2.0
    assert (tmp_path / "uri" / "k" / "meta.json").exists() and store.holder("k") is None


def test_an_object_store_backend_claims_by_check_then_write(tmp_path):
    import pyarrow.fs

    store = DenseStore(tmp_path / "unused")
    # a filesystem without exclusive creates (as S3): local here, behind the pyarrow interface
    store._io.fs, store._io.root = pyarrow.fs.LocalFileSystem(), str(tmp_path / "arrow")
    assert store.claim("k") and not store.claim("k")
    store.release("k")
    assert store.claim("k")
    store.release("k")
    assert store.entry("k") is None and not (tmp_path / "arrow" / "k" / "claim").exists()
    store.write_curve("k", [])
    assert (tmp_path / "arrow" / "k" / "curve.json").exists()   # written through pyarrow


# --- the key


def _data(seed: int = 0) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    split = {f"{s}_{k}": (torch.randint(0, 256, (4, 3, 8, 8), generator=g, dtype=torch.uint8)
                          if k == "x" else torch.arange(4))
             for s in ("train", "val", "test") for k in ("x", "y")}
    return SimpleNamespace(**split, classes=["a", "b"], mean=(0.5,) * 3, std=(0.25,) * 3)


def test_dense_keys_come_from_the_metadata():
    groups = {n for n, f in FIELDS.items() if f.metadata["group"] in ("data", "train", "hgsr")}
    # Where the files are and how they are read is not the network: the data fingerprint and
    # the weights' sha256 stand in the address for data_dir, the data path and init_weights.
    located = {"data_dir", "cache_dir", "data_path", "data_memory_gb", "data_workers",
               "init_weights"}
    assert set(dense_keys()) == (groups - located - {"zero_tol"}) | {"seed", "compile"}
    assert not {"prune_ratio", "finetune_epochs", "early_stop", "trial_id"} & set(dense_keys())


def _other(name: str, value):
    """A valid value of key ``name`` other than ``value``."""
    meta = FIELDS[name].metadata
    if meta["choices"]:
        return next(c for c in meta["choices"] if c != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, int):
        return value + 1 if meta["hi"] is None or value + 1 <= meta["hi"] else value - 1
    return value / 2 if value > 0 else meta["hi"] / 2


@pytest.mark.parametrize("name", list(FIELDS))
def test_changing_a_key_changes_the_dense_key_iff_it_is_an_applicable_dense_key(name):
    if name == "init_weights":   # a path: the address holds the file's content hash instead
        pytest.skip("tests/models/test_init_weights.py: the hash, not the path, in the address")
    base = make_config({"dataset": "synthetic"})
    runtime, data = resolve_runtime("cpu"), _data()
    try:
        changed = base.replace(**{name: _other(name, getattr(base, name))})
    except UserError:
        pytest.skip(f"{name}: no other valid value alone")
    differs = dense_key(changed, data, runtime) != dense_key(base, data, runtime)
    off = inapplicable.inapplicable_keys(base) | inapplicable.inapplicable_keys(changed)
    applies = name not in off
    assert differs == (name in dense_keys() and applies)


def test_unregularized_configs_share_one_key():
    runtime, data = resolve_runtime("cpu"), _data()
    a = make_config({"reg": "none", "mix": 0.1, "reg_solver": "proximal"})
    b = make_config({"reg": "group_l12", "lam": 0.0, "lam_scale": "init"})
    c = make_config({"reg": "l1", "lam": 0.0})
    assert len({dense_key(x, data, runtime) for x in (a, b, c)}) == 1
    assert normalized_keys(a)["reg"] == "none" and normalized_keys(a)["mix"] is None
    assert dense_key(make_config({"reg": "l1"}), data, runtime) != dense_key(a, data, runtime)


def test_the_data_and_the_runtime_are_in_the_key():
    cfg, data = make_config({}), _data()
    other = _data()
    other.train_x[0, 0, 0, 0] ^= 1                 # one bit of one pixel
    assert data_fingerprint(other) != data_fingerprint(data)
    cpu = resolve_runtime("cpu")
    assert dense_key(cfg, other, cpu) != dense_key(cfg, data, cpu)
    bf16 = resolve_runtime("cpu", precision="bf16")
    assert dense_key(cfg, data, bf16) != dense_key(cfg, data, cpu)
    nhwc = resolve_runtime("cpu", channels_last="on")
    assert dense_key(cfg, data, nhwc) != dense_key(cfg, data, cpu)


def test_the_hgsearch_and_torch_versions_are_in_the_key(monkeypatch):
    """Other numerics, another network: an upgrade does not reuse what the old one trained."""
    import hgsearch.dense_store as dense_store

    cfg, data, cpu = make_config({}), _data(), resolve_runtime("cpu")
    before = dense_key(cfg, data, cpu)
    monkeypatch.setattr(torch, "__version__", "0.0.1")
    after_torch = dense_key(cfg, data, cpu)
    monkeypatch.setattr(dense_store, "version_of", lambda package: "0.0.1")
    assert len({before, after_torch, dense_key(cfg, data, cpu)}) == 3


# --- the sweep's plumbing


def test_the_sweeps_store_is_beside_tunes_state_or_in_the_results_folder(tmp_path):
    from hgsearch.search.tuner import dense_root

    sp = SimpleNamespace(share_dense=True)
    assert dense_root("s3://b/p/", "demo", tmp_path, sp) == "s3://b/p/demo/dense"
    assert dense_root(None, "demo", tmp_path, sp) == str(tmp_path / "dense")
    assert dense_root(None, "demo", tmp_path, SimpleNamespace(share_dense=False)) is None


def test_without_checkpoints_the_worker_still_reports_the_end_of_the_dense_phase(monkeypatch):
    import math

    from hgsearch.search import worker

    reports: list[tuple[dict, object]] = []
    monkeypatch.setattr(worker.tune, "report",
                        lambda metrics, checkpoint=None: reports.append((metrics, checkpoint)))
    reporter = worker.PhaseReporter(("acc_final", "params_ratio"))
    assert reporter.load() is None
    for phase, epoch in (("train", 5), ("trained", 0), ("pruned", 0), ("finetune", 1)):
        reporter.save({"phase": phase, "epoch": epoch})
    assert len(reports) == 1 and reports[0][1] is None
    metrics = reports[0][0]
    assert metrics["hg_phase"] == "trained" and metrics["hg_final"] is False
    assert math.isnan(metrics["acc_final"]) and math.isnan(metrics["params_ratio"])
    assert worker.report_of({"trial_id": "t1", "status": "stopped"}, ("acc_final",))[
        "hg_status"] == "stopped"
