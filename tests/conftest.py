from __future__ import annotations

import pytest

# Small enough that a whole trial (train, score, prune, fine-tune, measure) takes seconds on CPU.
TINY = {
    "dataset": "synthetic", "synthetic_train_size": 300, "synthetic_test_size": 100,
    "arch": "resnet20", "epochs": 1, "batch_size": 50, "eval_batch_size": 200,
    "score_samples": 32, "finetune_epochs": 1, "latency_repeats": 1, "latency_batch": 4,
    "device": "cpu",
}


@pytest.fixture
def tiny(tmp_path) -> dict:
    """Trial keys of a tiny CPU trial writing under tmp_path (cache included)."""
    return {**TINY, "out_dir": str(tmp_path / "results"), "cache_dir": str(tmp_path / "cache")}


@pytest.fixture
def one_thread():
    """torch on one thread: faster for tiny tensors, and immune to other jobs on the same cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def trained_epochs(monkeypatch) -> list[int]:
    """Epochs of dense training run in this process (phase "train" of hgsearch.train.train),
    also when early stopping ends the phase."""
    import hgsearch.phases as trial_phases

    epochs: list[int] = []
    original = trial_phases.train

    def counting(*args, **kwargs):
        if kwargs.get("phase") == "train":
            then = kwargs.get("on_epoch_end")

            def counted(epoch: int, optimizer: dict) -> None:
                epochs.append(epoch)
                if then is not None:
                    then(epoch, optimizer)

            kwargs["on_epoch_end"] = counted
        return original(*args, **kwargs)

    monkeypatch.setattr(trial_phases, "train", counting)
    return epochs


@pytest.fixture(scope="session")
def real_trial(tmp_path_factory):
    """One tiny real trial (reg_levels=1, so reg_outer does not apply), and its raw curve."""
    import torch

    import hgsearch.trial as trial

    out = tmp_path_factory.mktemp("real")
    raw: list[dict] = []
    original = trial.write_curve

    def capture(out_dir, trial_id, records):
        raw.extend(dict(r) for r in records)   # what the trial emits, before the schema
        return original(out_dir, trial_id, records)

    trial.write_curve = capture
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        row = trial.run_trial({**TINY, "trial_id": "real", "reg_levels": 1,
                               "out_dir": str(out / "res"), "cache_dir": str(out / "cache")},
                              log=None)
    finally:
        trial.write_curve = original
        torch.set_num_threads(threads)
    return out / "res", row, raw


# The longest test files, longest first (measured with `make test`'s --durations). With
# `pytest -n 2 --dist loadfile`, files go to the two workers in collection order: starting the
# long ones first keeps one of them from running alone at the end.
LONGEST_FIRST = ("test_trial.py", "test_sweep.py", "test_cluster.py", "test_faults.py",
                 "test_ladder_faults.py", "test_driver.py", "test_dense_store.py", "test_gpu.py",
                 "test_suite.py", "test_local_cluster.py", "test_regularizers.py",
                 "test_quality.py", "test_early_stop.py", "test_score_cache.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    # sorted() is stable: within a file, and among the other files, the order stays as found.
    items[:] = sorted(items, key=lambda item: rank.get(item.path.name, len(rank)))
