"""A user's own images: one folder per class, a train and a val side.

    data_dir/train/<class>/<image>      training images (validation is carved from these)
    data_dir/val/<class>/<image>        held-out images: the test split

Any format Pillow opens, recognized by extension; class i is the i-th class folder name in sorted
order. Images are resized to ``image_size`` as ``images.py`` says (shorter side to
round(image_size / 0.875), centre crop), or streamed from disk (``streaming.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from hgsearch.data.cache import entry_stem
from hgsearch.data.images import decoded_split, eval_resize, image_extensions, list_images
from hgsearch.data.splits import Loaded
from hgsearch.errors import UserError

LAYOUT = "imagefolder layout: data_dir/train/<class>/<image> and data_dir/val/<class>/<image>"


class FolderIndex(NamedTuple):
    """The files of an imagefolder and their labels, before anything is decoded."""

    root: Path                  # resolved
    classes: list[str]
    train_files: list[Path]
    train_labels: list[int]
    test_files: list[Path]      # the val/ side
    test_labels: list[int]


def index_imagefolder(data_dir: Path) -> FolderIndex:
    """List ``data_dir``'s train/ and val/ images; UserError naming the folder at fault."""
    root = data_dir.resolve()
    classes = _class_folders(root / "train")
    val_classes = _class_folders(root / "val")
    if classes != val_classes:
        only_train = sorted(set(classes) - set(val_classes)) or ["-"]
        only_val = sorted(set(val_classes) - set(classes)) or ["-"]
        raise UserError(f"{root}: train/ and val/ must hold the same class folders; only in "
                        f"train: {', '.join(only_train)}; only in val: {', '.join(only_val)}")
    splits: list[list] = []
    for split in ("train", "val"):
        files, labels = [], []
        for label, name in enumerate(classes):
            found = list_images(root / split / name)
            if not found and split == "train":
                raise UserError(f"{root / split / name}: no images; expected files Pillow opens "
                                f"({_some_extensions()})")
            files += found
            labels += [label] * len(found)
        if not files:
            raise UserError(f"{root / split}: no images in any class folder; expected the {LAYOUT}")
        splits += [files, labels]
    return FolderIndex(root, classes, *splits)


def load_imagefolder(index: FolderIndex, *, image_size: int, cache_dir: Path) -> Loaded:
    """Train and val (= test) images of ``index``, (N, 3, image_size, image_size) uint8."""
    resize = eval_resize(image_size, "imagefolder")
    splits = []
    for split, files, labels in (("train", index.train_files, index.train_labels),
                                 ("val", index.test_files, index.test_labels)):
        splits += decoded_split(files, labels, size=image_size, cache_dir=cache_dir,
                                resize=resize,
                                stem=entry_stem("imagefolder", index.root, split, image_size))
    return Loaded(index.classes, *splits)


def _class_folders(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise UserError(f"{folder}: missing; expected the {LAYOUT}")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UserError(f"{folder}: holds no class folders; expected the {LAYOUT}")
    return classes


def _some_extensions() -> str:
    common = [".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"]
    return ", ".join(e for e in common if e in image_extensions()) + ", ..."
