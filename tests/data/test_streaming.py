"""The streaming data path: same evaluation tensors as the in-memory path, torchvision's training
recipe, the decision rule, determinism, worker processes, a trial end to end."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from hgsearch.config import make_config
from hgsearch.data import DataSplits, StreamingData, load_dataset
from hgsearch.data import budget as budget_module
from hgsearch.data.images import open_rgb
from hgsearch.data.recipe import train_image
from hgsearch.data.streaming import EVAL, ImageFiles, Loader
from hgsearch.errors import UserError
from hgsearch.runtime import resolve_runtime
from tests.data_fixtures import smooth_image, write_image


def write_folder(root, *, per_class=(9, 3), classes=("ant", "bee", "cow"), seed=0):
    """Non-square images (PNG and JPEG) of varied sizes, so resizing and cropping matter."""
    rng = np.random.default_rng(seed)
    for split, n in zip(("train", "val"), per_class):
        for c in classes:
            for i in range(n):
                h, w = int(rng.integers(24, 40)), int(rng.integers(24, 40))
                img = np.asarray(Image.fromarray(smooth_image(rng, 40)).resize((w, h)))
                write_image(root / split / c / f"{c}{i}{'.png' if i % 2 else '.jpg'}", img)
    return root


def keys(tmp_path, root, **more):
    return make_config({"dataset": "imagefolder", "data_dir": str(root), "image_size": 16,
                        "val_fraction": 0.25, "cache_dir": str(tmp_path / "cache"),
                        "device": "cpu", **more})


def both(tmp_path, root, **more):
    memory = load_dataset(keys(tmp_path, root, data_path="memory", **more))
    stream = load_dataset(keys(tmp_path, root, data_path="stream", data_workers=2, **more))
    assert isinstance(memory, DataSplits) and isinstance(stream, StreamingData)
    return memory, stream


def test_streaming_and_in_memory_give_the_same_evaluation_tensors(tmp_path):
    """Same validation files (the same carve), same order, same normalization, same values;
    and ``sample`` draws the same images from the same generator state."""
    root = write_folder(tmp_path / "data")
    memory, stream = both(tmp_path, root)
    assert stream.mean == memory.mean and stream.std == memory.std   # exact: all 27 images
    runtime = resolve_runtime("cpu")
    mem, st = memory.device_splits(runtime), stream.device_splits(runtime)
    for name in ("train", "val", "test"):
        assert len(mem[name]) == len(st[name])
        a, b = list(mem[name].eval_batches(5)), list(st[name].eval_batches(5))
        assert [len(y) for _, y in a] == [len(y) for _, y in b]
        assert torch.equal(torch.cat([x for x, _ in a]), torch.cat([x for x, _ in b])), name
        assert torch.equal(torch.cat([y for _, y in a]), torch.cat([y for _, y in b])), name
    xa, ya = mem["train"].sample(7, generator=torch.Generator().manual_seed(4))
    xb, yb = st["train"].sample(7, generator=torch.Generator().manual_seed(4))
    assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_training_recipe_is_torchvisions(tmp_path):
    """RandomResizedCrop(S) + RandomHorizontalFlip as torchvision draws them from the global
    generator seeded alike (the images are PNG: decoding adds no difference)."""
    from torchvision import transforms as T

    rng = np.random.default_rng(1)
    path = tmp_path / "a.png"
    write_image(path, np.asarray(Image.fromarray(smooth_image(rng, 64)).resize((61, 37))))
    reference = T.Compose([T.RandomResizedCrop(20), T.RandomHorizontalFlip()])
    for seed in range(12):
        torch.manual_seed(seed)
        expected = np.asarray(reference(open_rgb(path)))
        got = train_image(path, size=20, seed=seed)
        assert got.shape == (20, 20, 3) and np.array_equal(got, expected), seed
    assert len({train_image(path, size=20, seed=s).tobytes() for s in range(5)}) == 5


def test_decision_rule(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "data", per_class=(4, 2))
    # 18 images of 16 x 16: 13,824 bytes decoded
    assert isinstance(load_dataset(keys(tmp_path, root, data_memory_gb=1e-5)), StreamingData)
    assert isinstance(load_dataset(keys(tmp_path, root, data_memory_gb=1e-4)), DataSplits)
    monkeypatch.setattr(budget_module, "available_memory", lambda: 2 * 13_824 - 2)
    assert budget_module.choose_path(keys(tmp_path, root), 18) == "stream"
    monkeypatch.setattr(budget_module, "available_memory", lambda: 2 * 13_824)
    assert budget_module.choose_path(keys(tmp_path, root), 18) == "memory"
    assert budget_module.choose_path(keys(tmp_path, root, data_path="stream"), 1) == "stream"
    assert budget_module.choose_path(keys(tmp_path, root, data_path="memory",
                                          data_memory_gb=1e-9), 10**9) == "memory"
    assert budget_module.available_memory() > 0


@pytest.mark.parametrize("dataset", ["synthetic", "cifar10", "tinyimagenet"])
def test_only_imagefolder_streams(tmp_path, dataset):
    with pytest.raises(UserError, match="data_path=stream: dataset=") as err:
        load_dataset(make_config({"dataset": dataset, "data_dir": str(tmp_path),
                                  "data_path": "stream"}))
    assert "\n" not in str(err.value)


def first_batch(data: StreamingData, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    split = data.device_splits(resolve_runtime("cpu"))["train"]
    return next(iter(split.train_batches(6, generator=torch.Generator().manual_seed(seed))))


def test_same_seed_same_batches_whatever_the_workers(tmp_path):
    root = write_folder(tmp_path / "data")
    one = load_dataset(keys(tmp_path, root, data_path="stream", data_workers=1))
    two = load_dataset(keys(tmp_path, root, data_path="stream", data_workers=2))
    x1, y1 = first_batch(one, 0)
    x2, y2 = first_batch(two, 0)
    assert x1.shape == (6, 3, 16, 16) and torch.equal(x1, x2) and torch.equal(y1, y2)
    x3, _ = first_batch(two, 1)
    assert not torch.equal(x1, x3)
    # augmented: not the evaluation images
    split = two.device_splits(resolve_runtime("cpu"))["train"]
    plain = torch.cat([x for x, _ in split.eval_batches(100)])
    assert not any(torch.equal(x1[0], p) for p in plain)


def test_an_epoch_sees_every_training_image_once(tmp_path):
    root = write_folder(tmp_path / "data")
    data = load_dataset(keys(tmp_path, root, data_path="stream", data_workers=2))
    split = data.device_splits(resolve_runtime("cpu"))["train"]
    gen = torch.Generator().manual_seed(0)
    labels = [y for _, yb in split.train_batches(4, generator=gen, drop_last=False)
              for y in yb.tolist()]
    assert sorted(labels) == sorted(data.train_y.tolist()) and len(labels) == len(split)
    assert [len(y) for _, y in split.train_batches(4, generator=gen)] == [4] * (len(split) // 4)


class WhoDecodes(ImageFiles):
    """Reports the process that decoded each image and when, instead of its label."""

    def __getitem__(self, key):
        start = time.monotonic()
        x, _ = super().__getitem__(key)
        time.sleep(0.3)
        return x, (os.getpid(), start, time.monotonic())


def test_workers_decode_in_parallel_processes(tmp_path):
    root = write_folder(tmp_path / "data", per_class=(4, 1))
    files = sorted((root / "train").rglob("*.*"))[:8]
    dataset = WhoDecodes(files, [0] * len(files), size=16, resize=18)
    loader = Loader(dataset, workers=2, pin_memory=False)
    loader.loader.collate_fn = lambda items: [y for _, y in items]
    seen = [item for batch in loader.run([[(i, EVAL)] for i in range(8)]) for item in batch]
    pids = {pid for pid, _, _ in seen}
    assert len(pids) == 2 and os.getpid() not in pids
    overlap = any(a[0] != b[0] and a[1] < b[2] and b[1] < a[2] for a in seen for b in seen)
    assert overlap, "no two images were decoded at the same time"


def test_unreadable_file_is_named_in_one_line(tmp_path):
    root = write_folder(tmp_path / "data", per_class=(4, 2))
    bad = sorted((root / "val" / "bee").iterdir())[0]
    bad.write_bytes(b"not an image")
    data = load_dataset(keys(tmp_path, root, data_path="stream", data_workers=1))
    split = data.device_splits(resolve_runtime("cpu"))["test"]
    with pytest.raises(UserError, match=f"{bad.name}: not a readable image") as err:
        list(split.eval_batches(4))
    assert "\n" not in str(err.value)


@pytest.mark.slow   # a minute and more on two busy cores, as a tiny in-memory trial
def test_trial_runs_on_the_streaming_path(tmp_path):
    from hgsearch.results import load_results
    from hgsearch.trial import run_trial

    root = write_folder(tmp_path / "data", per_class=(12, 4))
    cfg = {**keys(tmp_path, root).to_dict(), "data_path": "stream", "data_workers": 2,
           "arch": "resnet20", "epochs": 1, "finetune_epochs": 1, "batch_size": 8,
           "eval_batch_size": 16, "score_samples": 8, "score_method": "l1_norm",
           "latency_repeats": 1, "latency_batch": 2, "bn_recalibrate": 8,
           "trial_id": "streamed", "out_dir": str(tmp_path / "res")}
    row = run_trial(cfg, log=None)
    assert row["status"] == "ok" and 0 <= row["acc_final"] <= 1
    df = load_results(tmp_path / "res")
    assert df.trial_id.tolist() == ["streamed"] and df.data_path[0] == "stream"
    assert row["images_train"] == 24   # 27 training images, 3 full batches of 8
