"""The user's initial weights (``init_weights``): read, checked against the architecture, loaded.

Accepted files: a torchvision-format state dict (.pt/.pth, read with ``weights_only=True``; also
a dict holding one under ``state_dict`` or ``model``, and DataParallel's ``module.`` prefix), a
``.safetensors`` file, or an hgsearch model file (``save_model``). The widths are read from the
weights (a network pruned elsewhere loads at its own widths); every other tensor must have the
architecture's shape. A classifier (``fc``) whose class count differs from the data's is left at
its fresh initialization, and the returned note says so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import torch

from hgsearch.errors import UserError
from hgsearch.models import (
    PrunableNet,
    build_model,
    default_widths,
    is_model_payload,
    model_payload,
)

_CLASSIFIER = ("fc.weight", "fc.bias")


class InitialModel(NamedTuple):
    model: PrunableNet
    sha256: str     # of the file's bytes
    note: str       # empty, or what was not taken from the file (the classifier)


def weights_sha256(path: str | Path) -> str:
    """sha256 (hex) of the file's content; the same file under two paths gives the same hash."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        raise UserError(f"init_weights={str(path)!r}: no such file") from None
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=32)
def _sha256(path: str, _size: int, _mtime_ns: int) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as err:
        raise UserError(f"init_weights={path!r}: cannot read ({err.__class__.__name__})") from None
    return h.hexdigest()


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """(state dict, arch named by the file or None) of a weights file; UserError if unreadable."""
    path = Path(path)
    where = f"init_weights={str(path)!r}"
    if not path.is_file():
        raise UserError(f"{where}: no such file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return dict(load_file(str(path), device="cpu")), None
        except (SafetensorError, OSError, ValueError) as err:
            raise UserError(f"{where}: not a readable safetensors file "
                            f"({err.__class__.__name__})") from None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a pickled nn.Module, a truncated file: one line, no traceback
        raise UserError(f"{where}: not a state dict torch.load(weights_only=True) can read "
                        f"({err.__class__.__name__}); save model.state_dict(), not the "
                        "model") from None
    arch = None
    if is_model_payload(payload):
        payload = model_payload(payload, path)
        arch, payload = payload["arch"], payload["state_dict"]
    elif isinstance(payload, Mapping):
        for entry in ("state_dict", "model"):
            if isinstance(payload.get(entry), Mapping):
                payload = payload[entry]
                break
    if not isinstance(payload, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload.items()):
        raise UserError(f"{where}: expected a state dict (parameter name -> tensor)")
    state = dict(payload)
    if state and all(k.startswith("module.") for k in state):   # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state, arch


class UserWeights(NamedTuple):
    """A weights file read once and checked against an architecture (``read_weights``)."""

    path: str
    state: dict[str, torch.Tensor]
    widths: list[int]       # each unit's width, as the file's producer weights give it
    sha256: str             # of the file's bytes


def read_weights(path: str | Path, arch: str) -> UserWeights:
    """Read ``path`` and check it holds a state dict of ``arch`` (any class count), or raise a
    UserError naming the first key that does not fit: before any data is read or written."""
    sha = weights_sha256(path)
    state, file_arch = read_state_dict(path)
    where = f"init_weights={str(path)!r}"
    if file_arch is not None and file_arch != arch:
        raise UserError(f"{where}: holds an hgsearch {file_arch} model, the trial's arch={arch}")
    widths = _widths_of(state, arch)
    fc = state.get("fc.weight")
    classes = int(fc.shape[0]) if isinstance(fc, torch.Tensor) and fc.dim() == 2 else 1
    # On the meta device, the global generator untouched: the trial's seeded init comes later.
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        expected = build_model(arch, classes, widths).state_dict()
    for name, tensor in state.items():
        if name not in expected:
            raise UserError(f"{where}: not a {arch} state dict: unexpected key {name!r} of "
                            f"shape {tuple(tensor.shape)}")
    for name, tensor in expected.items():
        # A checkpoint from before BatchNorm counted its batches loads as load_state_dict
        # loads it (strict=True fills the count in).
        if name not in state and not name.endswith("num_batches_tracked"):
            raise UserError(f"{where}: not a {arch} state dict: missing key {name!r} of shape "
                            f"{tuple(tensor.shape)}")
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise UserError(f"{where}: not a {arch} state dict: {name!r} has shape "
                            f"{tuple(tensor.shape)} in the file, {arch} expects "
                            f"{tuple(expected[name].shape)}")
    return UserWeights(str(path), state, widths, sha)


def initial_model(weights: UserWeights | str | Path, arch: str, num_classes: int) -> InitialModel:
    """``arch`` for ``num_classes`` classes with the given weights (a file, or one already read
    by ``read_weights``).

    Call after seeding: a replaced classifier keeps its fresh (seeded) initialization.
    """
    if not isinstance(weights, UserWeights):
        weights = read_weights(weights, arch)
    model = build_model(arch, num_classes, weights.widths)
    state, note = dict(weights.state), ""
    fc = state.get("fc.weight")
    if fc is not None and fc.shape[0] != num_classes:
        note = (f"classifier fc replaced: the weights have {fc.shape[0]} classes, the data "
                f"{num_classes}; fc is re-initialized")
        state.update({k: model.state_dict()[k] for k in _CLASSIFIER})
    model.load_state_dict(state, strict=True)
    return InitialModel(model, weights.sha256, note)


def _widths_of(state: Mapping[str, torch.Tensor], arch: str) -> list[int]:
    """Each unit's width as the file's producer weights give it (default where absent: the
    key check then names what is missing)."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        probe = build_model(arch, 1)
    names = {module: name for name, module in probe.named_modules()}
    widths = []
    for unit, full in zip(probe.units(), default_widths(arch)):
        w = state.get(names[unit.producer] + ".weight")
        widths.append(int(w.shape[0]) if isinstance(w, torch.Tensor) and w.dim() == 4
                      and w.shape[0] >= 1 else full)
    return widths
