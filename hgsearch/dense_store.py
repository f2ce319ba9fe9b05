"""Shared dense training: a content-addressed store of trained dense networks (issue 11).

Trials whose dense keys (``config.dense_keys``), data and runtime are equal train the same
network, so it is trained once and kept under ``root/<dense_key>/``::

    state.pt    the network, generator and RNG states, the train-phase curve (and a stopped
                entry's optimizer state); loads with weights_only=True
    meta.json   {"status": "trained"|"stopped"|"diverged", "epoch", "seconds_train",
                "commit", "version", "keys"}, written LAST: an entry without it does not exist
                (a diverged entry's state.pt holds only its curve and error)
    curve.json  the live per-epoch training curve, rewritten after each epoch by the trainer
    claim       who trains it now (host, pid, time); its heartbeat is rewritten while it trains

``root`` is a folder (shared by every node) or a pyarrow URI (``s3://bucket/path``). In a folder
claims are O_CREAT|O_EXCL files and files are renamed into place; on a URI a claim is
check-then-write. A race can only make two trials train one network (paid twice, never wrong):
there, or in a folder when a claim judged stale is renewed at that moment and a third trial
creates one while the stale check has it renamed aside (store_files.remove_if).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import torch

from hgsearch.config import FIELDS, TrialConfig, dense_keys
from hgsearch.fileio import json_text, version_of
from hgsearch.inapplicable import inapplicable_keys
from hgsearch.models.weights import weights_sha256
from hgsearch.runtime import Runtime
from hgsearch.store_files import StoreFiles


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")     # "pid:[4026531836]" on Linux
    except OSError:
        return ""


_PIDNS = _pid_namespace()


def data_fingerprint(data: Any) -> str:
    """sha256 of the loaded split tensors, the class names and the normalization (hex); the
    streaming path's data (files, not tensors) gives its own."""
    if hasattr(data, "fingerprint"):
        return data.fingerprint()
    h = hashlib.sha256()
    for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        t = getattr(data, name).contiguous()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.numpy().data)
    h.update(json.dumps([list(data.classes), list(data.mean), list(data.std)]).encode())
    return h.hexdigest()


def normalized_keys(cfg: TrialConfig) -> dict[str, Any]:
    """The dense keys as the network sees them: inapplicable ones None, and an unregularized
    config (reg=none or lam=0, the baseline's) as reg=none, lam=0 with every hgsr key None."""
    values = cfg.to_dict()
    off = inapplicable_keys(values)
    out = {k: None if k in off else values[k] for k in dense_keys()}
    if not cfg.regularized:
        out.update({k: None for k in out if FIELDS[k].metadata["group"] == "hgsr"})
        out.update(reg="none", lam=0.0)
    return out


def dense_key(cfg: TrialConfig, data: Any, runtime: Runtime, *,
              fingerprint: str | None = None) -> str:
    """The content address (16 hex) of the dense network ``cfg`` trains on ``data``."""
    payload = {"keys": normalized_keys(cfg), "data": fingerprint or data_fingerprint(data),
               "runtime": [runtime.device.type, str(runtime.autocast_dtype),
                           runtime.channels_last],
               "version": version_of("hgsearch"), "torch": torch.__version__}
    if cfg.init_weights:   # the file's content, not its path (absent: addresses stay as before)
        payload["init_weights_sha256"] = weights_sha256(cfg.init_weights)
    return hashlib.sha256(json_text(payload, indent=0).encode()).hexdigest()[:16]


def reference_config(cfg: TrialConfig) -> TrialConfig:
    """The same trial without the regularizer: its network is the early-stopping reference."""
    return cfg.replace(reg="none")


class Entry(NamedTuple):
    status: str                 # trained | stopped
    epoch: int                  # the last epoch trained
    seconds_train: float
    state: dict[str, Any]       # as in state.pt


def snapshot(model: torch.nn.Module, gen: torch.Generator, curve: list[dict],
             optimizer: dict | None = None) -> dict[str, Any]:
    """What an entry keeps of a trial at the end of (or stopped in) its training."""
    state = {"model": model.state_dict(), "generator": gen.get_state(),
             "rng": torch.get_rng_state(), "curve": [dict(r) for r in curve],
             **({"optimizer": optimizer} if optimizer is not None else {})}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def restore(state: dict[str, Any], model: torch.nn.Module, gen: torch.Generator,
            curve: list[dict]) -> None:
    """Put a trial where the entry's training left it: network, generator, RNG and curve."""
    model.load_state_dict(state["model"])
    gen.set_state(state["generator"])
    torch.set_rng_state(state["rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    curve[:] = [dict(r) for r in state["curve"]]


class DenseStore:
    """Trained dense networks by ``dense_key``; claims say who trains one now.

    ``stale_s``: a claim whose heartbeat is older is abandoned (its trainer's node died);
    ``heartbeat_s``: how often a trainer rewrites it; ``poll_s``: how often a waiter looks.
    """

    def __init__(self, root: str | Path, *, stale_s: float = 300.0, heartbeat_s: float = 30.0,
                 poll_s: float = 2.0) -> None:
        self.root, self._io = str(root), StoreFiles(str(root))
        self.stale_s, self.heartbeat_s, self.poll_s = stale_s, heartbeat_s, poll_s
        # key -> our token, the event that ends its heartbeat, the lock a rewrite holds
        self._held: dict[str, tuple[str, threading.Event, threading.Lock]] = {}

    def meta(self, key: str) -> dict[str, Any] | None:
        return _parsed(self._io.read(f"{key}/meta.json")) or None

    def read_bytes(self, rel: str) -> bytes | None:
        """A file that another cache keeps beside the entries (``<key>/...``), or None."""
        return self._io.read(rel)

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write such a file atomically (renamed into place, or whole on close)."""
        self._io.write(rel, data)

    def entry(self, key: str) -> Entry | None:
        """The committed entry of ``key`` (meta.json and the state it names), or None."""
        for _ in range(5):     # a stopped entry may be replaced by its continuation meanwhile
            meta = self.meta(key)
            raw = self._io.read(f"{key}/state.pt") if meta else None
            if meta is None or raw is None:
                return None
            try:
                state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
            except Exception:       # unreadable (damaged, or not ours): trained over
                return None
            if state.get("epoch") == meta["epoch"] and state.get("status") == meta["status"]:
                return Entry(meta["status"], int(meta["epoch"]), float(meta["seconds_train"]),
                             state)
        return None

    def save(self, key: str, state: dict[str, Any], *, status: str, epoch: int,
             seconds_train: float, keys: dict[str, Any]) -> None:
        """Commit an entry: the state first, meta.json last."""
        buf = io.BytesIO()
        torch.save({**state, "status": status, "epoch": epoch}, buf)
        self._io.write(f"{key}/state.pt", buf.getvalue())
        self.write_curve(key, state["curve"])
        # commit: a new id each save, so a waiter tells a retraining's commit from the one
        # it replaced even when both say (trained, epochs).
        meta = {"status": status, "epoch": epoch, "seconds_train": seconds_train,
                "commit": uuid.uuid4().hex, "version": version_of("hgsearch"), "keys": keys}
        self._io.write(f"{key}/meta.json", json_text(meta).encode())

    def curve(self, key: str) -> list[dict]:
        """The live (or final) training curve of ``key``; empty when none was written."""
        raw = self._io.read(f"{key}/curve.json")
        return json.loads(raw) if raw else []

    def write_curve(self, key: str, curve: list[dict]) -> None:
        self._io.write(f"{key}/curve.json", json_text([dict(r) for r in curve]).encode())

    def holder(self, key: str) -> dict[str, Any] | None:
        """The live claim on ``key`` (who trains it), or None; a stale claim is removed."""
        if (raw := self._io.read(f"{key}/claim")) is None:
            return None
        info = _parsed(raw)     # {}: being written by a check-then-write store, so live
        if info and self._stale(info):
            self._io.remove_if(f"{key}/claim", raw)
            return None
        return info or {"host": "?", "pid": 0}

    def _stale(self, info: dict[str, Any]) -> bool:
        if time.time() - float(info.get("time", 0)) > self.stale_s:
            return True
        # The PID is this machine's only in this PID namespace: containers sharing a host
        # name but not their processes (--network host) would see live trainers as dead.
        if info.get("host") == socket.gethostname() and info.get("pidns", _PIDNS) == _PIDNS:
            try:
                os.kill(int(info["pid"]), 0)
            except ProcessLookupError:
                return True
            except (PermissionError, ValueError, KeyError):
                return False
        return False

    def claim(self, key: str) -> bool:
        """Take the claim on ``key`` (taking over a stale one); False while another holds it."""
        self.holder(key)           # drops a stale claim
        token, stop = uuid.uuid4().hex, threading.Event()
        if not self._io.create(f"{key}/claim", self._claim_body(token, 0)):
            return False
        self._held[key] = held = (token, stop, threading.Lock())
        threading.Thread(target=self._beat, args=(key, held, threading.current_thread()),
                         daemon=True, name=f"dense-heartbeat-{key}").start()
        return True

    def heartbeat(self, key: str, epoch: int = 0) -> None:
        """Rewrite our claim on ``key`` with the time now and the epoch reached."""
        if (held := self._held.get(key)) is not None:
            self._rewrite(key, held, epoch)

    def release(self, key: str) -> None:
        if (held := self._held.pop(key, None)) is not None:
            token, stop, lock = held
            stop.set()      # no beat starts now; one under way ends first (so none writes
            # the claim back after), though a store write that hangs is not waited for forever
            ours = lock.acquire(timeout=max(60.0, 2 * self.heartbeat_s))
            try:
                if self._claim_info(key).get("token") == token:
                    self._io.delete(f"{key}/claim")
            finally:
                if ours:
                    lock.release()

    def _claim_info(self, key: str) -> dict[str, Any]:
        return _parsed(self._io.read(f"{key}/claim"))

    def _claim_body(self, token: str, epoch: int) -> bytes:
        return json_text({"host": socket.gethostname(), "pid": os.getpid(), "pidns": _PIDNS,
                          "time": time.time(), "token": token, "epoch": epoch}).encode()

    def _rewrite(self, key: str, held: tuple[str, threading.Event, threading.Lock],
                 epoch: int | None = None) -> bool:
        """Our claim with the time now; False once released or not ours (taken over as stale:
        this trainer goes on, the network is then paid twice, never wrong)."""
        token, stop, lock = held
        with lock:
            if stop.is_set():
                return False
            info = self._claim_info(key)
            if not info:
                # Gone a moment (a stale check renames it aside, then puts a fresh one back) or
                # being written: look again at the next beat rather than stop beating.
                return True
            if info.get("token") != token:
                return False
            epoch = info.get("epoch", 0) if epoch is None else epoch
            self._io.write(f"{key}/claim", self._claim_body(token, epoch))
            return True

    def _beat(self, key: str, held: tuple[str, threading.Event, threading.Lock],
              owner: threading.Thread) -> None:
        # Between epochs too, so a long epoch is not taken for a dead trainer; it ends with the
        # thread that trains, so an abandoned training goes stale.
        while not held[1].wait(self.heartbeat_s) and owner.is_alive() \
                and self._rewrite(key, held):
            pass


def _parsed(raw: bytes | None) -> dict[str, Any]:
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}
