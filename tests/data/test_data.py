from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import hgsearch
from hgsearch.config import make_config
from hgsearch.data import DeviceData, channel_stats, load_dataset, stratified_split
from hgsearch.data.cache import cache_root
from hgsearch.data.device import _crop_flip
from hgsearch.data.synthetic import make_synthetic
from hgsearch.errors import UserError
from tests.data_fixtures import (
    corrupt_file,
    smooth_image,
    write_cifar,
    write_image,
    write_imagefolder,
    write_tinyimagenet,
)


def cfg(tmp_path, **keys):
    return make_config({"cache_dir": str(tmp_path / "cache"), **keys})


def match(loaded: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each loaded image, the closest expected image and its mean absolute difference."""
    diff = np.abs(loaded[:, None].astype(np.int16) - expected[None].astype(np.int16))
    dist = diff.reshape(len(loaded), len(expected), -1).mean(2)
    return dist.argmin(1), dist.min(1)


def rows(x: torch.Tensor | np.ndarray) -> list[bytes]:
    """Images as a sorted list of byte strings: compares two sets of images as multisets."""
    x = np.asarray(x)
    return sorted(x[i].tobytes() for i in range(len(x)))


# --- synthetic --------------------------------------------------------------------------------

def test_synthetic_is_deterministic_balanced_and_seeded():
    x, y = make_synthetic(300, seed=3, split="train")
    x2, y2 = make_synthetic(300, seed=3, split="train")
    assert x.shape == (300, 3, 32, 32) and x.dtype == np.uint8 and y.dtype == np.int64
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert np.bincount(y).tolist() == [30] * 10
    other, _ = make_synthetic(300, seed=4, split="train")
    test, _ = make_synthetic(300, seed=3, split="test")
    assert np.abs(x.astype(int) - other).mean() > 20 and np.abs(x.astype(int) - test).mean() > 20


@pytest.fixture(scope="module")
def synthetic_pair():
    return make_synthetic(2000, seed=0, split="train"), make_synthetic(1000, seed=0, split="test")


def test_synthetic_is_not_separable_by_one_pixel(synthetic_pair):
    """The best single-pixel threshold (any pixel, channel, threshold; a class on each side),
    chosen on the training images, does near chance (10%) on the test images."""
    (x, y), (xt, yt) = synthetic_pair
    f, ft = x.reshape(len(x), -1), xt.reshape(len(xt), -1)
    onehot = np.eye(10, dtype=np.float32)[y]
    best = (-1.0, None)
    for t in range(16, 256, 16):
        counts_left = onehot.T @ (f < t).astype(np.float32)  # (10, pixels): class counts below t
        counts_right = onehot.sum(0)[:, None] - counts_left
        acc = (counts_left.max(0) + counts_right.max(0)) / len(y)
        j = int(acc.argmax())
        if acc[j] > best[0]:
            best = (acc[j], (t, j, counts_left[:, j].argmax(), counts_right[:, j].argmax()))
    t, j, a, b = best[1]
    assert np.mean(np.where(ft[:, j] < t, a, b) == yt) < 0.16


def test_synthetic_is_not_separable_by_mean_colour(synthetic_pair):
    """A Gaussian classifier (one full covariance per class) on the mean colour: near chance."""
    (x, y), (xt, yt) = synthetic_pair
    m, mt = x.mean((2, 3)) / 255, xt.mean((2, 3)) / 255
    scores = []
    for c in range(10):
        mu, cov = m[y == c].mean(0), np.cov(m[y == c].T) + 1e-6 * np.eye(3)
        d = mt - mu
        scores.append(-0.5 * np.einsum("ij,jk,ik->i", d, np.linalg.inv(cov), d)
                      - 0.5 * np.linalg.slogdet(cov)[1])
    assert np.mean(np.argmax(scores, 0) == yt) < 0.16


def ridge_accuracy(a: torch.Tensor, y: np.ndarray, at: torch.Tensor, yt: np.ndarray, *,
                   lam: float) -> float:
    """Test accuracy of one-hot ridge regression on features a (N, D); dual form (N x N)."""
    mu = a.mean(0)
    a, at = a - mu, at - mu
    target = F.one_hot(torch.tensor(y), 10).float()
    chol = torch.linalg.cholesky(a @ a.T + lam * torch.eye(len(a)))
    weights = a.T @ torch.cholesky_solve(target - target.mean(0), chol)  # (D, 10)
    return float(((at @ weights).argmax(1).numpy() == yt).mean())


def oriented_energy(x: np.ndarray) -> torch.Tensor:
    """24 features per image that ignore colour, position and phase: for quadrature pairs of
    Gabor filters (4 orientations, periods 4 and 6 px), the energy summed over RGB, normalized
    over the filters at each pixel, then its mean, max and std over the image."""
    r = torch.arange(7) - 3.0
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    filters = []
    for period in (4.0, 6.0):
        for k in range(4):
            u = xx * np.cos(k * np.pi / 4) + yy * np.sin(k * np.pi / 4)
            for phase in (0.0, np.pi / 2):
                f = torch.exp(-(xx**2 + yy**2) / 8) * torch.cos(2 * np.pi * u / period + phase)
                filters.append(f - f.mean())
    z = torch.tensor(x, dtype=torch.float32).div(255).reshape(-1, 1, 32, 32)
    resp = F.conv2d(z, torch.stack(filters)[:, None]).reshape(len(x), 3, 8, 2, 26, 26)
    energy = (resp**2).sum((1, 3))  # (N, 8, 26, 26)
    energy = energy / (energy.sum(1, keepdim=True) + 1e-3)
    return torch.cat([energy.mean((2, 3)), energy.amax((2, 3)), energy.std((2, 3))], 1)


def test_synthetic_defeats_a_linear_classifier_on_raw_pixels(synthetic_pair):
    """Ridge regression on all 3072 pixel values (best of several penalties, scored on the test
    split, which favours it) stays near chance, while the same regression on 24 fixed
    colour-, position- and phase-invariant features does far better: the classes live in local
    oriented structure, which a CNN can learn (ResNet-20 reaches ~95%, see the data report)."""
    (x, y), (xt, yt) = synthetic_pair
    a = torch.tensor(x.reshape(len(x), -1), dtype=torch.float32) / 255
    at = torch.tensor(xt.reshape(len(xt), -1), dtype=torch.float32) / 255
    linear = max(ridge_accuracy(a, y, at, yt, lam=lam) for lam in (1.0, 30.0, 1000.0))
    assert linear < 0.25
    feats, feats_t = oriented_energy(x), oriented_energy(xt)
    scale = feats.std(0)
    structured = ridge_accuracy(feats / scale, y, feats_t / scale, yt, lam=1.0)
    assert structured > 0.6 and structured > 2.5 * linear


# --- validation split and statistics -----------------------------------------------------------

@pytest.mark.parametrize("counts,fraction", [([50] * 10, 0.1), ([7, 13, 1, 30], 0.25),
                                             ([3, 3, 3], 0.5), ([101, 57], 0.01)])
def test_stratified_split(counts, fraction):
    labels = torch.tensor(np.repeat(np.arange(len(counts)), counts))
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))]
    train, val = stratified_split(labels, val_fraction=fraction, seed=0)
    assert len(val) == round(fraction * len(labels))
    assert sorted(train.tolist() + val.tolist()) == list(range(len(labels)))
    per_class = np.bincount(labels[val].numpy(), minlength=len(counts))
    assert np.all(np.abs(per_class - fraction * np.array(counts)) < 1)
    again = stratified_split(labels, val_fraction=fraction, seed=0)
    assert torch.equal(again[1], val)


def test_stratified_split_depends_on_the_seed():
    labels = torch.arange(1000) % 10
    a = stratified_split(labels, val_fraction=0.1, seed=0)[1]
    b = stratified_split(labels, val_fraction=0.1, seed=1)[1]
    assert len(a) == len(b) == 100 and not torch.equal(a, b)


def test_channel_stats_match_a_float_computation():
    x = torch.randint(0, 256, (5000, 3, 4, 5), dtype=torch.uint8, generator=torch.Generator()
                      .manual_seed(0))
    x[:, 1] //= 3
    mean, std = channel_stats(x)
    ref = x.double().div(255)
    assert np.allclose(mean, ref.mean((0, 2, 3)).numpy(), atol=1e-12)
    assert np.allclose(std, ref.std((0, 2, 3), correction=0).numpy(), atol=1e-12)


@pytest.mark.parametrize("fraction,seed", [(0.1, 0), (0.3, 5)])
def test_load_dataset_synthetic_splits(tmp_path, fraction, seed):
    c = cfg(tmp_path, synthetic_train_size=400, synthetic_test_size=60, val_fraction=fraction,
            data_seed=seed)
    d = load_dataset(c)
    assert (d.name, d.num_classes, d.image_size, len(d.classes)) == ("synthetic", 10, 32, 10)
    assert len(d.val_y) == round(fraction * 400) and len(d.train_y) + len(d.val_y) == 400
    assert d.test_x.shape == (60, 3, 32, 32)
    for x, y in ((d.train_x, d.train_y), (d.val_x, d.val_y), (d.test_x, d.test_y)):
        assert x.dtype == torch.uint8 and y.dtype == torch.int64 and x.device.type == "cpu"
    x, y = make_synthetic(400, seed=seed, split="train")
    assert rows(torch.cat([d.train_x, d.val_x])) == rows(x)
    assert set(rows(d.train_x)).isdisjoint(rows(d.val_x))
    ref = d.train_x.double() / 255  # statistics of what is left for training only
    assert np.allclose(d.mean, ref.mean((0, 2, 3)).numpy())
    assert np.allclose(d.std, ref.std((0, 2, 3), correction=0).numpy())
    again = load_dataset(c)
    assert torch.equal(again.val_x, d.val_x) and torch.equal(again.train_y, d.train_y)
    other = load_dataset(c.replace(data_seed=seed + 1))
    assert not torch.equal(other.train_x, d.train_x)
    # The test split has its own random stream: it stays put when the training size changes.
    assert torch.equal(load_dataset(c.replace(synthetic_train_size=300)).test_x, d.test_x)
    assert hgsearch.load_dataset is load_dataset


# --- CIFAR --------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
@pytest.mark.parametrize("inside", [False, True])
def test_cifar_reads_the_official_pickles(tmp_path, variant, inside):
    fx = write_cifar(tmp_path / "data", variant=variant, inside=inside)
    d = load_dataset(cfg(tmp_path, dataset=variant, data_dir=str(fx.data_dir), val_fraction=0.2))
    assert d.num_classes == len(fx.classes) == (10 if variant == "cifar10" else 100)
    assert d.classes == fx.classes and d.image_size == 32
    assert torch.equal(d.test_x, torch.from_numpy(fx.test_x))
    assert torch.equal(d.test_y, torch.from_numpy(fx.test_y))
    assert len(d.val_y) == 12 and len(d.train_y) == 48
    # Train + val are the fixture's training images, each with its own label.
    pairs = {fx.train_x[i].tobytes(): fx.train_y[i] for i in range(len(fx.train_y))}
    for x, y in ((d.train_x, d.train_y), (d.val_x, d.val_y)):
        assert [pairs[x[i].numpy().tobytes()] for i in range(len(y))] == y.tolist()
    assert rows(torch.cat([d.train_x, d.val_x])) == rows(fx.train_x)


@pytest.mark.parametrize("variant,remove,named", [
    ("cifar10", "data_batch_3", "data_batch_3"),
    ("cifar10", "batches.meta", "batches.meta"),
    ("cifar100", "test", "test"),
])
def test_cifar_missing_file_is_named(tmp_path, variant, remove, named):
    fx = write_cifar(tmp_path / "data", variant=variant)
    folder = fx.data_dir / ("cifar-10-batches-py" if variant == "cifar10" else "cifar-100-python")
    (folder / remove).unlink()
    with pytest.raises(UserError, match=f"missing {named}"):
        load_dataset(cfg(tmp_path, dataset=variant, data_dir=str(fx.data_dir)))


@pytest.mark.parametrize("name", ["data_batch_2", "test_batch", "batches.meta"])
@pytest.mark.parametrize("how", ["truncate", "garbage"])
def test_cifar_corrupt_pickle_is_named(tmp_path, name, how):
    fx = write_cifar(tmp_path / "data")
    corrupt_file(fx.data_dir / "cifar-10-batches-py" / name, how=how)
    with pytest.raises(UserError, match=f"{name}: not a readable CIFAR pickle"):
        load_dataset(cfg(tmp_path, dataset="cifar10", data_dir=str(fx.data_dir)))


# --- TinyImageNet -------------------------------------------------------------------------------

@pytest.mark.parametrize("parent", [True, False])
def test_tinyimagenet_layout(tmp_path, parent):
    fx = write_tinyimagenet(tmp_path / "data", parent=parent)
    d = load_dataset(cfg(tmp_path, dataset="tinyimagenet", data_dir=str(fx.data_dir),
                         val_fraction=0.34))
    assert d.classes == fx.classes == sorted(fx.classes) and d.num_classes == 3
    assert d.image_size == 64 and d.train_x.shape[1:] == (3, 64, 64)
    assert len(d.val_y) == 3 and np.bincount(d.val_y.numpy()).tolist() == [1, 1, 1]
    for (x, y), (ex, ey) in [((torch.cat([d.train_x, d.val_x]), torch.cat([d.train_y, d.val_y])),
                              (fx.train_x, fx.train_y)), ((d.test_x, d.test_y), (fx.test_x,
                                                                                 fx.test_y))]:
        which, dist = match(x.numpy(), ex)
        assert sorted(which.tolist()) == list(range(len(ex)))  # each file exactly once
        assert dist.max() < 3  # JPEG quality 95; two different fixture images differ by ~50
        assert y.tolist() == ey[which].tolist()
    gray = [i for i, f in enumerate(fx.train_files) if f.name.endswith("_1.JPEG")]
    which, _ = match(d.train_x.numpy(), fx.train_x)
    for i in np.flatnonzero(np.isin(which, gray)):
        assert torch.equal(d.train_x[i, 0], d.train_x[i, 1])  # grayscale to RGB


@pytest.mark.parametrize("damage,named", [
    (lambda base: (base / "wnids.txt").unlink(), "no wnids.txt"),
    (lambda base: (base / "val" / "val_annotations.txt").unlink(), "val_annotations.txt: missing"),
    (lambda base: (base / "val" / "images" / "val_2.JPEG").unlink(), "val_2.JPEG: listed in"),
    (lambda base: [p.unlink() for p in (base / "train" / "n01443537" / "images").iterdir()],
     "n01443537/images: no images"),
    (lambda base: (base / "train" / "n04067472" / "images").rename(base / "elsewhere"),
     "n04067472/images: missing"),
    (lambda base: corrupt_file(base / "train" / "n02124075" / "images" / "n02124075_2.JPEG"),
     "n02124075_2.JPEG: not a readable image"),
    (lambda base: corrupt_file(base / "val" / "images" / "val_4.JPEG", how="garbage"),
     "val_4.JPEG: not a readable image"),
])
def test_tinyimagenet_errors_name_the_file(tmp_path, damage, named):
    fx = write_tinyimagenet(tmp_path / "data")
    damage(fx.data_dir / "tiny-imagenet-200")
    with pytest.raises(UserError, match=named) as err:
        load_dataset(cfg(tmp_path, dataset="tinyimagenet", data_dir=str(fx.data_dir)))
    assert "\n" not in str(err.value)
    assert not list((tmp_path / "cache").glob("*val*"))  # nothing cached for a failed split


# --- imagefolder --------------------------------------------------------------------------------

def torchvision_eval(x: np.ndarray, size: int) -> np.ndarray:
    """torchvision's evaluation transform, Resize(round(size / 0.875)) + CenterCrop(size), of
    (N, 3, H, W) uint8 images (the second computation of the imagefolder decoding)."""
    from torchvision import transforms as T

    tf = T.Compose([T.Resize(round(size / 0.875)), T.CenterCrop(size)])
    return np.stack([np.asarray(tf(Image.fromarray(img.transpose(1, 2, 0)))).transpose(2, 0, 1)
                     for img in x])


def test_imagefolder_reads_png_and_jpeg(tmp_path):
    """Each image as torchvision's Resize(37) + CenterCrop(32) makes it: exactly for PNG."""
    fx = write_imagefolder(tmp_path / "data")
    d = load_dataset(cfg(tmp_path, dataset="imagefolder", data_dir=str(fx.data_dir),
                         val_fraction=0.25))
    assert d.classes == ["cat", "dog", "eel"] and d.image_size == 32
    assert len(d.train_y) + len(d.val_y) == 12 and len(d.test_y) == 6  # notes.txt, .DS_Store
    x, y = torch.cat([d.train_x, d.val_x]).numpy(), torch.cat([d.train_y, d.val_y]).numpy()
    train_ex, test_ex = torchvision_eval(fx.train_x, 32), torchvision_eval(fx.test_x, 32)
    for (got, gy), (ex, ey, files) in [((x, y), (train_ex, fx.train_y, fx.train_files)),
                                       ((d.test_x.numpy(), d.test_y.numpy()),
                                        (test_ex, fx.test_y, fx.test_files))]:
        which, dist = match(got, ex)
        assert sorted(which.tolist()) == list(range(len(ex)))
        assert gy.tolist() == ey[which].tolist()
        for i, j in enumerate(which):  # PNG (RGB, gray, RGBA) is exact; JPEG close
            lossless = files[j].suffix.lower() == ".png"
            assert dist[i] == 0 if lossless else dist[i] < 3, files[j]


def test_imagefolder_resizes_shorter_side_then_centre_crops(tmp_path):
    """A 96x63 image of three vertical bands (red | green | blue, 32 px each) becomes 56x37
    (shorter side round(32 / 0.875) = 37, longer int(37 x 96 / 63)), then its centre 32 x 32
    from column 12: red to column 6.8, green to 25.6, blue after (blended at the edges)."""
    bands = np.zeros((63, 96, 3), np.uint8)
    for k in range(3):
        bands[:, 32 * k:32 * (k + 1), k] = 255
    for split in ("train", "val"):
        write_image(tmp_path / "data" / split / "only" / "bands.png", bands)
        write_image(tmp_path / "data" / split / "only" / "other.png", smooth_image(
            np.random.default_rng(0), 40))
    d = load_dataset(cfg(tmp_path, dataset="imagefolder", data_dir=str(tmp_path / "data"),
                         image_size=32, val_fraction=0.5))
    x = d.test_x[0].numpy()  # bands.png sorts first
    assert x.shape == (3, 32, 32)
    expected = {range(0, 6): 0, range(8, 25): 1, range(27, 32): 2}
    for cols, channel in expected.items():
        for col in cols:
            assert x[channel, :, col].min() > 240 and x[:, :, col].sum(0).max() < 255 + 15


@pytest.mark.parametrize("damage,named", [
    (lambda fx: (fx.data_dir / "val" / "eel").rename(fx.data_dir / "val" / "emu"),
     "only in train: eel; only in val: emu"),
    (lambda fx: corrupt_file(fx.train_files[5]), "dog_1.PNG: not a readable image"),
    (lambda fx: corrupt_file(fx.test_files[1], how="garbage"), "cat_1.jpg: not a readable image"),
    (lambda fx: [p.unlink() for p in (fx.data_dir / "train" / "cat").iterdir()],
     "cat: no images"),
    (lambda fx: (fx.data_dir / "val").rename(fx.data_dir / "test"), "val: missing"),
])
def test_imagefolder_errors_name_the_file(tmp_path, damage, named):
    fx = write_imagefolder(tmp_path / "data")
    damage(fx)
    with pytest.raises(UserError, match=named) as err:
        load_dataset(cfg(tmp_path, dataset="imagefolder", data_dir=str(fx.data_dir)))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("dataset", ["cifar10", "tinyimagenet", "imagefolder"])
def test_missing_data_dir(tmp_path, dataset):
    with pytest.raises(UserError, match="nowhere: no such folder"):
        load_dataset(cfg(tmp_path, dataset=dataset, data_dir=str(tmp_path / "nowhere")))


# --- the decoded-image cache --------------------------------------------------------------------

@pytest.fixture
def count_opens(monkeypatch):
    opened = []
    real_open = Image.open

    def counting_open(fp, *args, **kwargs):
        opened.append(fp)
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    return opened


def test_cache_decodes_once_and_notices_a_changed_file(tmp_path, count_opens):
    fx = write_imagefolder(tmp_path / "data")
    c = cfg(tmp_path, dataset="imagefolder", data_dir=str(fx.data_dir))
    first = load_dataset(c)
    assert len(count_opens) == 18
    count_opens.clear()
    second = load_dataset(c)
    assert count_opens == []
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.test_x, second.test_x)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2  # one entry per split

    write_image(fx.test_files[0], np.zeros((32, 32, 3), np.uint8))
    third = load_dataset(c)
    assert count_opens == fx.test_files  # only the split with the changed file
    which, _ = match(second.test_x.numpy(), fx.test_x)
    unchanged = second.test_x[torch.from_numpy(which != 0)]
    assert rows(third.test_x) == rows(torch.cat([torch.zeros(1, 3, 32, 32, dtype=torch.uint8),
                                                 unchanged]))
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2  # the stale entry is gone
    count_opens.clear()
    load_dataset(c.replace(image_size=16))  # another size is another entry
    assert len(count_opens) == 18 and len(list((tmp_path / "cache").glob("*.npy"))) == 4


def test_cache_survives_a_damaged_entry_and_concurrent_builders(tmp_path, count_opens):
    fx = write_tinyimagenet(tmp_path / "data")
    c = cfg(tmp_path, dataset="tinyimagenet", data_dir=str(fx.data_dir))
    results = []
    threads = [threading.Thread(target=lambda: results.append(load_dataset(c)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and torch.equal(results[0].train_x, results[1].train_x)
    entries = sorted((tmp_path / "cache").iterdir())
    assert [p.suffix for p in entries] == [".npy", ".npy"]  # no temporary file left
    entries[0].write_bytes(entries[0].read_bytes()[:100])
    count_opens.clear()
    again = load_dataset(c)
    assert 0 < len(count_opens) < 20 and torch.equal(again.train_x, results[0].train_x)


def test_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("HGSEARCH_CACHE", str(tmp_path / "env"))
    assert cache_root("") == tmp_path / "env"
    assert cache_root(str(tmp_path / "explicit")) == tmp_path / "explicit"
    monkeypatch.delenv("HGSEARCH_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root("") == tmp_path / "home" / ".cache" / "hgsearch"


# --- DeviceData ---------------------------------------------------------------------------------

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def small_split(n: int = 20, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g),
            torch.arange(n))


def unnormalize(x: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return (x.float() * std + mean) * 255


@pytest.mark.parametrize("pad", [0, 1, 4])
def test_crop_flip_equals_per_image_pad_and_slice(pad):
    x, _ = small_split(16, 9)
    g = torch.Generator().manual_seed(pad)
    offsets = torch.randint(0, 2 * pad + 1, (16, 2), generator=g)
    flips = torch.rand(16, generator=g) < 0.5
    out = _crop_flip(x, offsets, flips, pad=pad)
    for i in range(16):
        padded = torch.zeros(3, 9 + 2 * pad, 9 + 2 * pad, dtype=torch.uint8)
        padded[:, pad:pad + 9, pad:pad + 9] = x[i]
        ref = padded[:, offsets[i, 0]:offsets[i, 0] + 9, offsets[i, 1]:offsets[i, 1] + 9]
        assert torch.equal(out[i], ref.flip(-1) if flips[i] else ref)


def candidates(x: torch.Tensor, pad: int) -> list[tuple[int, int, int, bool, torch.Tensor]]:
    """Every crop (zero padding ``pad``) and flip of every image, by brute force."""
    n, _, h, w = x.shape
    out = []
    for i in range(n):
        p = F.pad(x[i], (pad,) * 4)
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                crop = p[:, dy:dy + h, dx:dx + w]
                out += [(i, dy, dx, False, crop), (i, dy, dx, True, crop.flip(-1))]
    return out


def test_train_batches_are_crops_and_flips_of_a_permutation():
    x, y = small_split(20, 6)
    data = DeviceData(x, y, mean=MEAN, std=STD, device="cpu")
    table = candidates(x, 2)
    seen, offsets, flips = [], set(), []
    for xb, yb in data.train_batches(8, generator=torch.Generator().manual_seed(0), pad=2,
                                     drop_last=False):
        assert xb.dtype == torch.float32 and xb.shape[1:] == (3, 6, 6)
        restored = unnormalize(xb).round().to(torch.uint8)
        for img, label in zip(restored, yb):
            hits = [c for c in table if c[0] == label and torch.equal(c[4], img)]
            assert hits, "not a crop or flip of its own image"
            seen.append(int(label))
            offsets |= {c[1:3] for c in hits}
            flips.append(all(c[3] for c in hits))
    assert sorted(seen) == list(range(20))  # every image once per epoch
    assert seen != list(range(20))  # in a shuffled order
    assert len(offsets) > 5 and 0 < sum(flips) < 20


@pytest.mark.parametrize("drop_last,expected", [(True, [8, 8]), (False, [8, 8, 4])])
def test_train_batch_sizes(drop_last, expected):
    data = DeviceData(*small_split(20), mean=MEAN, std=STD, device="cpu")
    g = torch.Generator().manual_seed(0)
    sizes = [len(yb) for _, yb in data.train_batches(8, generator=g, drop_last=drop_last)]
    assert sizes == expected


def test_train_batches_flip_only_and_seeding():
    x, y = small_split(20)
    data = DeviceData(x, y, mean=MEAN, std=STD, device="cpu")

    def epoch(seed):
        g = torch.Generator().manual_seed(seed)
        return list(data.train_batches(20, generator=g, pad=0, flip=True))

    (xb, yb), = epoch(0)
    restored = unnormalize(xb).round().to(torch.uint8)
    flipped = [not torch.equal(restored[i], x[yb[i]]) for i in range(20)]
    for i in range(20):
        assert torch.equal(restored[i], x[yb[i]].flip(-1) if flipped[i] else x[yb[i]])
    assert 0 < sum(flipped) < 20
    assert torch.equal(epoch(0)[0][0], xb) and not torch.equal(epoch(1)[0][0], xb)
    (xn, yn), = list(data.train_batches(20, generator=torch.Generator().manual_seed(0), pad=0,
                                        flip=False))
    assert torch.equal(unnormalize(xn).round().to(torch.uint8), x[yn])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_eval_batches_normalize_in_order(dtype, channels_last):
    x, y = small_split(20)
    data = DeviceData(x, y, mean=MEAN, std=STD, device="cpu", dtype=dtype,
                      channels_last=channels_last)
    batches = list(data.eval_batches(8))
    assert [len(b[1]) for b in batches] == [8, 8, 4] and len(data) == 20
    xs = torch.cat([b[0] for b in batches])
    assert xs.dtype == dtype and torch.equal(torch.cat([b[1] for b in batches]), y)
    ref = (x.double() / 255 - torch.tensor(MEAN, dtype=torch.double).view(1, 3, 1, 1)) / \
        torch.tensor(STD, dtype=torch.double).view(1, 3, 1, 1)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    assert torch.allclose(xs.double(), ref, atol=tol, rtol=tol)
    assert batches[0][0].is_contiguous(memory_format=torch.channels_last) == channels_last


def test_sample_draws_distinct_unaugmented_images():
    x, y = small_split(20)
    data = DeviceData(x, y, mean=MEAN, std=STD, device="cpu")
    xs, ys = data.sample(7, generator=torch.Generator().manual_seed(0))
    assert xs.shape == (7, 3, 8, 8) and len(set(ys.tolist())) == 7
    assert torch.equal(unnormalize(xs).round().to(torch.uint8), x[ys])
    again = data.sample(7, generator=torch.Generator().manual_seed(0))[1]
    assert torch.equal(again, ys)
    assert sorted(data.sample(50, generator=torch.Generator())[1].tolist()) == list(range(20))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_split_with_a_cpu_generator():
    x, y = small_split(20)
    data = DeviceData(x, y, mean=MEAN, std=STD, device="cuda")
    cpu = DeviceData(x, y, mean=MEAN, std=STD, device="cpu")
    a = list(data.train_batches(8, generator=torch.Generator().manual_seed(0)))
    b = list(cpu.train_batches(8, generator=torch.Generator().manual_seed(0)))
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.device.type == "cuda" and torch.equal(ya.cpu(), yb)
        assert torch.allclose(xa.cpu(), xb, atol=1e-5)
