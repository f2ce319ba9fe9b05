"""The score cache: a one-shot prune scores a trained network once; every other prune value of
it gets the same row, curve and model as a trial that scored itself, without scoring."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from hgsearch import score_cache
from hgsearch.dense_store import DenseStore
from hgsearch.models import build_model
from hgsearch.score_cache import ScoreCache
from hgsearch.trial import run_trial
from tests.reuse_checks import curve_of, differing, model_of


@pytest.fixture
def scorings(monkeypatch) -> list[str]:
    """The criterion calls made in this process (each one a real scoring)."""
    calls: list[str] = []
    real = score_cache.get_criterion

    def counting(name: str):
        criterion = real(name)

        class Counted:
            def __init__(self) -> None:
                self.name = criterion.name

            def __call__(self, *args, **kwargs):
                calls.append(criterion.name)
                return criterion(*args, **kwargs)

        return Counted()

    monkeypatch.setattr(score_cache, "get_criterion", counting)
    return calls


def _entries(store: DenseStore, key: str) -> list[str]:
    folder = Path(store.root) / key / "scores"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# random: the scoring advances the trial's generator, so a hit must put it where it would be.
@pytest.mark.slow   # tens of seconds: make test-slow (CI runs it)
@pytest.mark.parametrize("method", ["loss_increase", "random"])
def test_cached_scores_give_the_trial_that_scored_itself(tiny, tmp_path, one_thread, scorings,
                                                         method):
    keys = {**tiny, "score_method": method}
    out, store = keys["out_dir"], DenseStore(tmp_path / "dense")
    first = run_trial({**keys, "trial_id": "r7", "prune_ratio": 0.7}, log=None,
                      dense_store=store)
    assert scorings == [method] and first["scores_reused"] is False
    widths = sum(first["widths_dense"])
    assert first["images_score"] == (32 * (widths + 1) if method == "loss_increase" else 32)
    for ratio in (0.3, 0.5):
        rung = run_trial({**keys, "trial_id": f"r{ratio}", "prune_ratio": ratio}, log=None,
                         dense_store=store)
        assert scorings == [method]                  # the rung did not score
        assert rung["scores_reused"] is True and rung["images_score"] == 0
        fresh = run_trial({**keys, "trial_id": f"f{ratio}", "prune_ratio": ratio}, log=None)
        assert fresh["scores_reused"] is False and fresh["images_score"] > 0
        assert scorings == [method] * 2              # the fresh one scored (it has no store)
        del scorings[1:]
        assert differing(fresh, rung) == []
        assert curve_of(out, f"r{ratio}") == curve_of(out, f"f{ratio}")
        a, b = model_of(out, f"f{ratio}"), model_of(out, f"r{ratio}")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert len(_entries(store, first["dense_key"])) == 1


def test_a_different_sample_size_is_a_different_entry(tiny, tmp_path, one_thread, scorings):
    store = DenseStore(tmp_path / "dense")
    a = run_trial({**tiny, "trial_id": "s32", "prune_ratio": 0.5}, log=None, dense_store=store)
    b = run_trial({**tiny, "trial_id": "s16", "prune_ratio": 0.5, "score_samples": 16},
                  log=None, dense_store=store)
    assert a["dense_key"] == b["dense_key"] and b["dense_reused"]
    assert len(scorings) == 2 and not b["scores_reused"]
    assert len(_entries(store, a["dense_key"])) == 2


@pytest.mark.slow   # tens of seconds: make test-slow (CI runs it)
def test_several_prune_steps_are_not_cached(tiny, tmp_path, one_thread, scorings):
    store = DenseStore(tmp_path / "dense")
    keys = {**tiny, "prune_ratio": 0.5, "prune_steps": 2}
    rows = [run_trial({**keys, "trial_id": f"p{i}"}, log=None, dense_store=store)
            for i in range(2)]
    assert len(scorings) == 4                        # two rounds each, both trials
    assert [r["scores_reused"] for r in rows] == [False, False]
    assert rows[1]["dense_reused"] and _entries(store, rows[0]["dense_key"]) == []


def _inputs(seed: int = 0):
    torch.manual_seed(seed)
    model = build_model("resnet20", 10).eval()
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    return model, x, y


def test_a_hit_returns_the_scores_and_leaves_the_generator_as_scoring_would(tmp_path, scorings):
    store, (model, x, y) = DenseStore(tmp_path / "dense"), _inputs()
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    scored = ScoreCache("random", store, "k")(model, x, y, batch_size=4, generator=g1)
    hit = ScoreCache("random", store, "k")
    again = hit(model, x, y, batch_size=4, generator=g2)
    assert scorings == ["random"] and hit.reused
    assert all(torch.equal(a, b) for a, b in zip(scored, again)) and len(again) == 9
    assert torch.equal(g1.get_state(), g2.get_state())
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))
    g3 = torch.Generator().manual_seed(6)       # another generator state: another entry
    ScoreCache("random", store, "k")(model, x, y, batch_size=4, generator=g3)
    with torch.no_grad():
        model.blocks[0].conv1.weight[0] += 1     # another network: another entry
    ScoreCache("random", store, "k")(model, x, y, batch_size=4, generator=g3)
    assert len(scorings) == 3 and len(_entries(store, "k")) == 3


def test_concurrent_callers_score_once(tmp_path):
    store, (model, x, y) = DenseStore(tmp_path / "dense", poll_s=0.01), _inputs()
    started, go, calls = threading.Event(), threading.Event(), []

    class Slow:
        name = "slow"

        def __call__(self, model, x, y, *, batch_size, generator):
            calls.append(1)
            started.set()
            go.wait(10)
            return [torch.arange(3, dtype=torch.float64)]

    out: dict[str, list] = {}

    def one(name: str) -> None:
        cache = ScoreCache(Slow(), store, "k")
        out[name] = cache(model, x, y, batch_size=4, generator=torch.Generator().manual_seed(0))

    a = threading.Thread(target=one, args=("a",))
    a.start()
    assert started.wait(10)
    b = threading.Thread(target=one, args=("b",))
    b.start()
    b.join(0.3)
    assert b.is_alive()                  # waiting for a's scores, not scoring them too
    go.set()
    a.join()
    b.join()
    assert len(calls) == 1 and torch.equal(out["a"][0], out["b"][0])
    assert not (Path(store.root) / "k" / "scores" / _entries(store, "k")[0] / "claim").exists()
