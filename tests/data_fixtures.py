"""Small datasets in each real on-disk layout, for tests (import these; they are not tests).

Every writer returns a ``Fixture`` holding the pixels and labels it wrote, so a test can compare
what a loader read with what is on disk. Pixels are CHW uint8 as the loaders return them; class
indices follow the layout's rule (CIFAR: the meta file's order; folders: sorted names).
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class Fixture:
    data_dir: Path                    # what to pass as data_dir
    classes: list[str]
    train_x: np.ndarray               # (N, 3, H, W) uint8, in the order the files were written
    train_y: np.ndarray               # (N,) int64
    test_x: np.ndarray
    test_y: np.ndarray
    train_files: list[Path] = field(default_factory=list)  # image layouts: one file per image
    test_files: list[Path] = field(default_factory=list)


# --- CIFAR: the pickles as the official (Python 2) files are -----------------------------------

class _Py2Pickler(pickle._Pickler):
    """Protocol 2 with bytes written as Python 2 ``str`` (BINSTRING) and numpy's reconstructor
    under its old name, as in the official CIFAR files: loading with encoding="latin1" (what
    torchvision does) gives str keys; with encoding="bytes", b"data", b"labels"."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes

    def save_global(self, obj, name=None) -> None:
        if getattr(obj, "__name__", "") == "_reconstruct" and "numpy" in obj.__module__:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)

    dispatch[type(len)] = save_global  # builtin functions such as numpy's _reconstruct


def write_py2_pickle(path: Path, obj: object) -> None:
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(obj)


def write_cifar(root: Path, *, variant: str = "cifar10", train_per_batch: int = 12,
                test_n: int = 20, seed: int = 0, inside: bool = False) -> Fixture:
    """CIFAR-10 (5 batches of ``train_per_batch``) or CIFAR-100 (one train file of
    5 x ``train_per_batch``) under root/cifar-10-batches-py or root/cifar-100-python.

    ``inside``: data_dir is the batches folder itself instead of its parent.
    """
    rng = np.random.default_rng(seed)
    ten = variant == "cifar10"
    folder = root / ("cifar-10-batches-py" if ten else "cifar-100-python")
    folder.mkdir(parents=True)
    n_classes = 10 if ten else 100
    classes = [f"class{i:03d}" for i in range(n_classes)]
    label_key = b"labels" if ten else b"fine_labels"

    def batch(n: int, name: str, tag: bytes) -> tuple[np.ndarray, np.ndarray]:
        x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        y = rng.integers(0, n_classes, n)
        entry = {b"batch_label": tag, label_key: [int(v) for v in y],
                 b"data": x.reshape(n, 3072), b"filenames": [b"img_%d.png" % i for i in range(n)]}
        if not ten:
            entry[b"coarse_labels"] = [int(v) // 5 for v in y]
        write_py2_pickle(folder / name, entry)
        return x, y

    if ten:
        parts = [batch(train_per_batch, f"data_batch_{i}", b"training batch %d of 5" % i)
                 for i in range(1, 6)]
        test = batch(test_n, "test_batch", b"testing batch 1 of 1")
        write_py2_pickle(folder / "batches.meta", {
            b"num_cases_per_batch": train_per_batch, b"num_vis": 3072,
            b"label_names": [c.encode() for c in classes]})
    else:
        parts = [batch(5 * train_per_batch, "train", b"training batch 1 of 1")]
        test = batch(test_n, "test", b"testing batch 1 of 1")
        write_py2_pickle(folder / "meta", {
            b"fine_label_names": [c.encode() for c in classes],
            b"coarse_label_names": [b"coarse%02d" % i for i in range(20)]})
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts]).astype(np.int64)
    return Fixture(folder if inside else root, classes, train_x, train_y, test[0],
                   test[1].astype(np.int64))


# --- image files -------------------------------------------------------------------------------

def smooth_image(rng: np.random.Generator, size: int, *, gray: bool = False) -> np.ndarray:
    """A smooth (JPEG-friendly) but distinct image, (size, size, 3) uint8: a random colour
    gradient plus a random low-frequency wave."""
    t = np.linspace(0, 1, size)[None, :, None]
    s = np.linspace(0, 1, size)[:, None, None]
    base, gx, gy = rng.uniform(40, 215, 3), rng.uniform(-40, 40, 3), rng.uniform(-40, 40, 3)
    f = rng.uniform(1, 3, 2)
    wave = 30 * np.sin(2 * np.pi * (f[0] * t + f[1] * s) + rng.uniform(0, 6.3))
    img = np.clip(base + gx * t + gy * s + wave, 0, 255).round().astype(np.uint8)
    if gray:
        img = np.repeat(img[..., :1], 3, axis=2)
    return img


def write_image(path: Path, img: np.ndarray, *, mode: str = "RGB") -> None:
    """Save (H, W, 3) uint8 RGB as ``path``'s format; mode "L" (gray), "RGBA" or "RGB"."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pil = Image.fromarray(img)
    if mode == "L":
        pil = pil.convert("L")
    elif mode == "RGBA":
        pil = pil.convert("RGBA")
        pil.putalpha(Image.fromarray(np.full(img.shape[:2], 128, np.uint8)))
    kwargs = {"quality": 95, "subsampling": 0} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    pil.save(path, **kwargs)


def corrupt_file(path: Path, *, how: str = "truncate") -> None:
    """Damage an image file: keep its first half ("truncate") or replace it by noise ("garbage")."""
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 500, np.uint8).tobytes())


def _chw(img: list[np.ndarray]) -> np.ndarray:
    return np.stack(img).transpose(0, 3, 1, 2).copy()


def write_tinyimagenet(root: Path, *, wnids: tuple[str, ...] = ("n02124075", "n01443537",
                                                                  "n04067472"),
                       train_per_class: int = 3, val_n: int = 5, seed: int = 0,
                       parent: bool = True) -> Fixture:
    """root/tiny-imagenet-200 with 64x64 JPEGs (some grayscale, as the real one has), boxes
    files and an unlabelled test/ folder. ``parent``: data_dir is root, else the folder itself."""
    rng = np.random.default_rng(seed)
    base = root / "tiny-imagenet-200"
    base.mkdir(parents=True)
    (base / "wnids.txt").write_text("".join(w + "\n" for w in wnids))
    (base / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in wnids))
    classes = sorted(wnids)
    train_x, train_y, train_files = [], [], []
    for w in wnids:
        lines = []
        for i in range(train_per_class):
            img = smooth_image(rng, 64, gray=i == 1)
            path = base / "train" / w / "images" / f"{w}_{i}.JPEG"
            write_image(path, img, mode="L" if i == 1 else "RGB")
            train_x.append(img)
            train_y.append(classes.index(w))
            train_files.append(path)
            lines.append(f"{w}_{i}.JPEG\t0\t0\t63\t63\n")
        (base / "train" / w / f"{w}_boxes.txt").write_text("".join(lines))
    test_x, test_y, test_files, notes = [], [], [], []
    for i in range(val_n):
        w = wnids[int(rng.integers(len(wnids)))]
        img = smooth_image(rng, 64)
        path = base / "val" / "images" / f"val_{i}.JPEG"
        write_image(path, img)
        test_x.append(img)
        test_y.append(classes.index(w))
        test_files.append(path)
        notes.append(f"val_{i}.JPEG\t{w}\t1\t2\t60\t61\n")
    (base / "val" / "val_annotations.txt").write_text("".join(notes))
    write_image(base / "test" / "images" / "test_0.JPEG", smooth_image(rng, 64))
    return Fixture(root if parent else base, classes, _chw(train_x), np.array(train_y),
                   _chw(test_x), np.array(test_y), train_files, test_files)


def write_imagefolder(root: Path, *, classes: tuple[str, ...] = ("cat", "dog", "eel"),
                      size: int = 32, train_per_class: int = 4, val_per_class: int = 2,
                      seed: int = 0) -> Fixture:
    """root/train/<class>/ and root/val/<class>/ with PNG and JPEG files mixed (RGB, gray,
    RGBA), already ``size`` x ``size``, plus a non-image file and a hidden file to be ignored."""
    rng = np.random.default_rng(seed)
    kinds = [(".png", "RGB"), (".jpg", "RGB"), (".PNG", "L"), (".png", "RGBA"), (".jpeg", "RGB")]
    out: dict[str, tuple[list, list, list]] = {}
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        xs, ys, files = [], [], []
        for label, name in enumerate(sorted(classes)):
            folder = root / split / name
            for i in range(per_class):
                suffix, mode = kinds[(i + label) % len(kinds)]
                img = smooth_image(rng, size, gray=mode == "L")
                path = folder / f"{name}_{i}{suffix}"
                write_image(path, img, mode=mode)
                xs.append(img)
                ys.append(label)
                files.append(path)
            (folder / "notes.txt").write_text("not an image\n")
            (folder / ".DS_Store").write_bytes(b"\0\1junk")
        out[split] = (xs, ys, files)
    (train_x, train_y, train_files), (test_x, test_y, test_files) = out["train"], out["val"]
    return Fixture(root, sorted(classes), _chw(train_x), np.array(train_y), _chw(test_x),
                   np.array(test_y), train_files, test_files)
