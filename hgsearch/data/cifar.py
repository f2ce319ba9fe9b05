"""CIFAR-10 and CIFAR-100 from the official python pickles, read by torchvision's readers.

    cifar-10-batches-py/   data_batch_1 .. data_batch_5, test_batch, batches.meta
    cifar-100-python/      train, test, meta            (the 100 fine labels are used)

``data_dir`` may hold that folder or be it. hgsearch checks the layout itself and has torchvision
read the files without comparing their MD5 sums with the official ones, so a re-pickled or reduced
copy (and the small fixtures of the tests) reads too; a damaged file fails to unpickle and is
named in the error. The pickles are unpickled first with only numpy's array reconstructors
allowed (``_refuse_code``): a pickle may name any function to call, so a file from elsewhere
would otherwise run code before torchvision sees what it holds.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torchvision.datasets import CIFAR10, CIFAR100

from hgsearch.data.splits import Loaded
from hgsearch.errors import UserError


def _without_md5(reader: type[CIFAR10]) -> type[CIFAR10]:
    """``reader`` with its file lists' checksums set to None (torchvision then checks existence)
    and its folder given per instance, so that ``data_dir`` may be the batches folder itself."""

    class Reader(reader):
        train_list = [[name, None] for name, _ in reader.train_list]
        test_list = [[name, None] for name, _ in reader.test_list]
        meta = {**reader.meta, "md5": None}

        def __init__(self, root: Path, *, folder: str, train: bool) -> None:
            self.base_folder = folder
            super().__init__(str(root), train=train, download=False)

    return Reader


READERS = {"cifar10": _without_md5(CIFAR10), "cifar100": _without_md5(CIFAR100)}


def load_cifar(data_dir: Path, *, variant: str) -> Loaded:
    """Train and test images (N, 3, 32, 32) uint8 of ``variant`` ("cifar10" or "cifar100")."""
    reader = READERS[variant]
    root, folder = _locate(data_dir, reader)
    for name in _file_names(reader):   # a second read of 185 MB: 0.6 s of the 1.2 s here
        _refuse_code(root / folder / name)
    splits = []
    for train in (True, False):
        try:
            ds = reader(root, folder=folder, train=train)
        except (pickle.UnpicklingError, EOFError, ValueError, KeyError, TypeError,
                AttributeError, IndexError) as err:
            raise UserError(_which_file_is_bad(root / folder, reader, err)) from None
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # HWC -> (N, 3, 32, 32)
        y = torch.tensor(ds.targets, dtype=torch.int64)
        if len(y) != len(x) or len(y) == 0 or y.min() < 0 or y.max() >= len(ds.classes):
            raise UserError(f"{root / folder}: labels do not match the images or the "
                            f"{len(ds.classes)} classes of {reader.meta['filename']}")
        splits += [x, y]
    return Loaded(list(ds.classes), *splits)


class _ArraysOnly(pickle.Unpickler):
    """Unpickles plain data and numpy arrays: any global but numpy's array ones is refused.
    (The official files name numpy.core.multiarray._reconstruct, numpy.ndarray, numpy.dtype.)"""

    ALLOWED = {(f"numpy.{core}.multiarray", f) for core in ("core", "_core")
               for f in ("_reconstruct", "scalar")} | {("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise _Refused(f"it names {module}.{name}, and a CIFAR pickle holds only data and "
                           "numpy arrays")
        return super().find_class(module, name)


class _Refused(pickle.UnpicklingError):
    pass


def _refuse_code(path: Path) -> None:
    """UserError if ``path`` holds more than plain data and numpy arrays."""
    try:
        with open(path, "rb") as f:
            _ArraysOnly(f, encoding="latin1").load()
    except _Refused as err:
        raise UserError(f"{path}: refused, not unpickled: {err}") from None
    except Exception:   # a damaged file: torchvision's read below names it as before
        return


def _locate(data_dir: Path, reader: type[CIFAR10]) -> tuple[Path, str]:
    """(root, folder) with the pickles in root/folder; folder "" when data_dir is that folder."""
    official = reader.base_folder  # the class's; instances set their own
    names = _file_names(reader)
    for root, folder in ((data_dir, official), (data_dir, "")):
        if all((root / folder / n).is_file() for n in names):
            return root, folder
    expected = f"expected the official python version: {official}/ holding {', '.join(names)}"
    where = data_dir / official if (data_dir / official).is_dir() else data_dir
    missing = [n for n in names if not (where / n).is_file()]
    if len(missing) == len(names):
        raise UserError(f"{data_dir}: no {official}/ folder and no CIFAR files; {expected}")
    raise UserError(f"{where}: missing {', '.join(missing)}; {expected}")


def _which_file_is_bad(folder: Path, reader: type[CIFAR10], err: Exception) -> str:
    """The error line for a pickle that torchvision could not read: find the file by trying each."""
    meta = reader.meta["filename"]
    for name in _file_names(reader):
        key = reader.meta["key"] if name == meta else "data"
        try:
            with open(folder / name, "rb") as f:
                entry = _ArraysOnly(f, encoding="latin1").load()
            found = isinstance(entry, dict) and key in entry
        except Exception as bad:  # any failure to unpickle names this file
            return f"{folder / name}: not a readable CIFAR pickle ({bad.__class__.__name__})"
        if not found:
            return f"{folder / name}: not a CIFAR pickle (expected a dict with {key!r})"
    return f"{folder}: not a readable CIFAR dataset ({err.__class__.__name__}: {err})"


def _file_names(reader: type[CIFAR10]) -> list[str]:
    """The data files, then the meta file."""
    return [n for n, _ in reader.train_list + reader.test_list] + [reader.meta["filename"]]
