"""TinyImageNet-200 in its official layout: 200 classes of 64x64 images.

    tiny-imagenet-200/wnids.txt                      one class id (wnid) per line
    tiny-imagenet-200/train/<wnid>/images/*.JPEG     the training images
    tiny-imagenet-200/val/images/*.JPEG              the labelled val images: our test split
    tiny-imagenet-200/val/val_annotations.txt        <file> TAB <wnid> TAB <bounding box>

Class i is the i-th wnid in sorted order (as torchvision's ImageFolder over train/ numbers them).
The unlabelled test/ folder is not read.
"""

from __future__ import annotations

from pathlib import Path

from hgsearch.data.cache import entry_stem
from hgsearch.data.images import decoded_split, list_images
from hgsearch.data.splits import Loaded
from hgsearch.errors import UserError

SIZE = 64
LAYOUT = ("tiny-imagenet-200 layout: wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG, "
          "val/val_annotations.txt")


def load_tinyimagenet(data_dir: Path, *, cache_dir: Path) -> Loaded:
    """Train and val (= test) images of the tiny-imagenet-200 folder ``data_dir`` or its child."""
    root = _find_root(data_dir.resolve())
    wnids = _read_wnids(root / "wnids.txt")
    index = {w: i for i, w in enumerate(wnids)}

    train_files, train_labels = [], []
    for wnid in wnids:
        folder = root / "train" / wnid / "images"
        if not folder.is_dir():
            raise UserError(f"{folder}: missing (wnids.txt lists {wnid}); expected the {LAYOUT}")
        files = list_images(folder)
        if not files:
            raise UserError(f"{folder}: no images; expected train/{wnid}/images/*.JPEG")
        train_files += files
        train_labels += [index[wnid]] * len(files)

    test_files, test_labels = _read_val(root / "val", index)
    train = decoded_split(train_files, train_labels, size=SIZE, cache_dir=cache_dir,
                          stem=entry_stem("tinyimagenet", root, "train", SIZE))
    test = decoded_split(test_files, test_labels, size=SIZE, cache_dir=cache_dir,
                         stem=entry_stem("tinyimagenet", root, "val", SIZE))
    return Loaded(wnids, *train, *test)


def _find_root(data_dir: Path) -> Path:
    for root in (data_dir, data_dir / "tiny-imagenet-200"):
        if (root / "wnids.txt").is_file():
            return root
    raise UserError(f"data_dir={data_dir}: no wnids.txt here or in tiny-imagenet-200/; "
                    f"expected the {LAYOUT}")


def _read_wnids(path: Path) -> list[str]:
    wnids = [line.strip() for line in _lines(path) if line.strip()]
    if not wnids:
        raise UserError(f"{path}: lists no classes; expected one wnid per line")
    if len(set(wnids)) != len(wnids):
        raise UserError(f"{path}: lists a wnid twice")
    return sorted(wnids)


def _read_val(val: Path, index: dict[str, int]) -> tuple[list[Path], list[int]]:
    """The val images and labels, in the order val_annotations.txt lists them."""
    annotations = val / "val_annotations.txt"
    if not annotations.is_file():
        raise UserError(f"{annotations}: missing; expected the {LAYOUT}")
    files, labels = [], []
    for n, line in enumerate(_lines(annotations), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise UserError(f"{annotations}:{n}: expected '<file>\\t<wnid>\\t...'")
        name, wnid = fields[0].strip(), fields[1].strip()
        if wnid not in index:
            raise UserError(f"{annotations}:{n}: wnid {wnid!r} is not in wnids.txt")
        path = val / "images" / name
        if not path.is_file():
            raise UserError(f"{path}: listed in {annotations.name} line {n} but missing")
        files.append(path)
        labels.append(index[wnid])
    if not files:
        raise UserError(f"{annotations}: lists no images")
    return files, labels


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read it as text ({err.__class__.__name__})") from None
