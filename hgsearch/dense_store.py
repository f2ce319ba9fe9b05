"""Shared dense training: a content-addressed store of trained dense networks (issue 11).

Trials whose dense keys (``config.dense_keys``), data and runtime are equal train the same
network, so it is trained once and kept under ``root/<dense_key>/``::

    state.pt    torch.save of the network, generator and RNG states and the train-phase curve
                (loads with weights_only=True); a stopped entry adds the optimizer state
    meta.json   {"status": "trained"|"stopped", "epoch", "seconds_train", "version", "keys"},
                written LAST: an entry without it does not exist
    curve.json  the live per-epoch training curve, rewritten after each epoch by the trainer
    claim       who trains it now (host, pid, time); its heartbeat is rewritten while it trains

``root`` is a folder (every node must share it) or a pyarrow URI (``s3://bucket/path``). In a
folder a claim is taken with O_CREAT|O_EXCL and files are renamed into place. On a URI the claim
is check-then-write: a race can only make two trials train the same network, and as entries are
content-addressed nothing is wrong then, only paid twice.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch

from hgsearch import early_stop
from hgsearch.config import FIELDS, TrialConfig, dense_keys, inapplicable_keys
from hgsearch.fileio import json_text, version_of, write_bytes_atomic
from hgsearch.runtime import Runtime

ENTRY_VERSION = 1
Log = Callable[[str], None]


def data_fingerprint(data: Any) -> str:
    """sha256 of the loaded split tensors, the class names and the normalization (hex)."""
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
    if cfg.reg == "none" or cfg.lam == 0:
        out.update({k: None for k in out if FIELDS[k].metadata["group"] == "hgsr"})
        out.update(reg="none", lam=0.0)
    return out


def dense_key(cfg: TrialConfig, data: Any, runtime: Runtime, *,
              fingerprint: str | None = None) -> str:
    """The content address (16 hex) of the dense network ``cfg`` trains on ``data``."""
    payload = {"keys": normalized_keys(cfg), "data": fingerprint or data_fingerprint(data),
               "runtime": [runtime.device.type, str(runtime.autocast_dtype),
                           runtime.channels_last],
               "version": version_of("hgsearch")}
    return hashlib.sha256(json_text(payload, indent=0).encode()).hexdigest()[:16]


def reference_config(cfg: TrialConfig) -> TrialConfig:
    """The same trial without the regularizer: its network is the early-stopping reference."""
    return cfg.replace(reg="none")


class Entry(NamedTuple):
    status: str                 # trained | stopped
    epoch: int                  # the last epoch trained
    seconds_train: float
    state: dict[str, Any]       # model, generator, rng, curve (and optimizer when stopped)


def snapshot(model: torch.nn.Module, gen: torch.Generator, curve: list[dict],
             optimizer: dict | None = None) -> dict[str, Any]:
    """What an entry keeps of a trial at the end of (or stopped in) its training."""
    state = {"model": model.state_dict(), "generator": gen.get_state(),
             "rng": torch.get_rng_state(), "curve": [dict(r) for r in curve]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    if optimizer is not None:
        state["optimizer"] = optimizer
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


class _Folder:
    """A store in a folder: atomic renames, exclusive creates."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, rel: str) -> bytes | None:
        try:
            return (self.root / rel).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, rel: str, data: bytes) -> None:
        write_bytes_atomic(self.root / rel, data)

    def create(self, rel: str, data: bytes) -> bool:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True

    def remove_if(self, rel: str, expected: bytes) -> bool:
        """Remove ``rel`` if it still holds ``expected`` (a stale claim), atomically."""
        path = self.root / rel
        grave = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.stale")
        try:
            os.rename(path, grave)
        except FileNotFoundError:
            return False
        if grave.read_bytes() == expected:
            grave.unlink()
            return True
        try:        # we moved a fresh claim written since: put it back unless another is there
            os.link(grave, path)
        except FileExistsError:
            pass
        grave.unlink()
        return False

    def delete(self, rel: str) -> None:
        (self.root / rel).unlink(missing_ok=True)


class _Arrow:
    """A store behind a pyarrow filesystem (S3, GCS, HDFS...): no atomic create (see module)."""

    def __init__(self, fs: Any, base: str) -> None:
        self.fs, self.base = fs, base.rstrip("/")

    def _path(self, rel: str) -> str:
        return f"{self.base}/{rel}"

    def read(self, rel: str) -> bytes | None:
        try:
            with self.fs.open_input_stream(self._path(rel)) as f:
                return f.read()
        except (FileNotFoundError, OSError):
            return None

    def write(self, rel: str, data: bytes) -> None:
        self.fs.create_dir(self._path(rel).rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(self._path(rel)) as f:
            f.write(data)

    def create(self, rel: str, data: bytes) -> bool:
        if self.read(rel) is not None:
            return False
        self.write(rel, data)
        return True

    def remove_if(self, rel: str, expected: bytes) -> bool:
        if self.read(rel) != expected:
            return False
        self.delete(rel)
        return True

    def delete(self, rel: str) -> None:
        try:
            self.fs.delete_file(self._path(rel))
        except (FileNotFoundError, OSError):
            pass


def _backend(root: str) -> _Folder | _Arrow:
    if "://" not in root:
        return _Folder(Path(root).expanduser())
    import pyarrow.fs

    fs, base = pyarrow.fs.FileSystem.from_uri(root)
    if isinstance(fs, pyarrow.fs.LocalFileSystem):
        return _Folder(Path(base))
    return _Arrow(fs, base)


class DenseStore:
    """Trained dense networks by ``dense_key``; claims say who trains one now.

    ``stale_s``: a claim whose heartbeat is older is abandoned (its trainer's node died);
    ``heartbeat_s``: how often a trainer rewrites it; ``poll_s``: how often a waiter looks.
    """

    def __init__(self, root: str | Path, *, stale_s: float = 300.0, heartbeat_s: float = 30.0,
                 poll_s: float = 2.0) -> None:
        self.root = str(root)
        self.stale_s, self.heartbeat_s, self.poll_s = stale_s, heartbeat_s, poll_s
        self._io = _backend(self.root)
        self._held: dict[str, tuple[bytes, threading.Event]] = {}
        self._lock = threading.Lock()

    # --- entries
    def meta(self, key: str) -> dict[str, Any] | None:
        raw = self._io.read(f"{key}/meta.json")
        return json.loads(raw) if raw else None

    def entry(self, key: str) -> Entry | None:
        """The committed entry of ``key`` (meta.json and the state it names), or None."""
        for _ in range(5):     # a stopped entry may be replaced by its continuation meanwhile
            meta = self.meta(key)
            raw = self._io.read(f"{key}/state.pt") if meta else None
            if meta is None or raw is None:
                return None
            state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
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
        meta = {"status": status, "epoch": epoch, "seconds_train": seconds_train,
                "version": version_of("hgsearch"), "keys": keys}
        self._io.write(f"{key}/meta.json", json_text(meta).encode())

    def curve(self, key: str) -> list[dict]:
        """The live (or final) training curve of ``key``; empty when none was written."""
        raw = self._io.read(f"{key}/curve.json")
        return json.loads(raw) if raw else []

    def write_curve(self, key: str, curve: list[dict]) -> None:
        self._io.write(f"{key}/curve.json", json_text([dict(r) for r in curve]).encode())

    # --- claims
    def holder(self, key: str) -> dict[str, Any] | None:
        """The live claim on ``key`` (who trains it), or None; a stale claim is removed."""
        raw = self._io.read(f"{key}/claim")
        if raw is None:
            return None
        try:
            info = json.loads(raw)
        except ValueError:      # half-written by a check-then-write store: treat as live once
            return {"host": "?", "pid": 0, "time": time.time()}
        if self._stale(info):
            self._io.remove_if(f"{key}/claim", raw)
            return None
        return info

    def _stale(self, info: dict[str, Any]) -> bool:
        if time.time() - float(info.get("time", 0)) > self.stale_s:
            return True
        if info.get("host") == socket.gethostname():
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
        token = uuid.uuid4().hex
        body = self._claim_body(token, epoch=0)
        if not self._io.create(f"{key}/claim", body):
            return False
        stop = threading.Event()
        with self._lock:
            self._held[key] = (token.encode(), stop)
        owner = threading.current_thread()
        threading.Thread(target=self._beat, args=(key, token, stop, owner), daemon=True,
                         name=f"dense-heartbeat-{key}").start()
        return True

    def heartbeat(self, key: str, epoch: int = 0) -> None:
        """Rewrite our claim on ``key`` with the time now (and the epoch reached)."""
        with self._lock:
            held = self._held.get(key)
        if held is not None:
            self._io.write(f"{key}/claim", self._claim_body(held[0].decode(), epoch=epoch))

    def release(self, key: str) -> None:
        with self._lock:
            held = self._held.pop(key, None)
        if held is not None:
            held[1].set()
            raw = self._io.read(f"{key}/claim")
            if raw is not None and json.loads(raw).get("token") == held[0].decode():
                self._io.delete(f"{key}/claim")

    def _claim_body(self, token: str, *, epoch: int) -> bytes:
        return json_text({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time(),
                          "token": token, "epoch": epoch}).encode()

    def _beat(self, key: str, token: str, stop: threading.Event,
              owner: threading.Thread) -> None:
        # Between epochs too, so a long epoch is not taken for a dead trainer; it stops with
        # the thread that trains, so an abandoned training goes stale.
        while not stop.wait(self.heartbeat_s) and owner.is_alive():
            raw = self._io.read(f"{key}/claim")
            info = json.loads(raw) if raw else {}
            if info.get("token") != token:
                return
            self._io.write(f"{key}/claim", self._claim_body(token, epoch=info.get("epoch", 0)))

    # --- waiting
    def reference_curve(self, key: str, epoch: int, log: Log) -> list[dict] | None:
        """The reference curve once it reached ``epoch``; waits while it is trained and not there
        yet. None when no reference exists nor is being trained (logged)."""
        waited = False
        while True:
            curve = self.curve(key)
            if any(r.get("epoch") == epoch and r.get("phase", "train") == "train" for r in curve):
                return curve
            if self.meta(key) is not None or self.holder(key) is None:
                log(f"early stopping: no unregularized reference {key} at epoch {epoch} "
                    "(none trained nor training): not stopping at this rung")
                return None
            if not waited:
                log(f"early stopping: waiting for the unregularized reference {key} to reach "
                    f"epoch {epoch}")
                waited = True
            time.sleep(self.poll_s)


class SharedDense:
    """One trial's use of the store for its dense network: reuse, wait, or claim and train."""

    def __init__(self, store: DenseStore, cfg: TrialConfig, data: Any, runtime: Runtime,
                 log: Log) -> None:
        fingerprint = data_fingerprint(data)
        self.store, self.cfg, self.log = store, cfg, log
        self.key = dense_key(cfg, data, runtime, fingerprint=fingerprint)
        self.reference = (dense_key(reference_config(cfg), data, runtime,
                                    fingerprint=fingerprint) if early_stop.active(cfg) else None)
        self.resume: Entry | None = None    # a stopped entry this trial trains on from
        self.held, self.t0, self.base = False, time.perf_counter(), 0.0

    def start(self, model: torch.nn.Module, gen: torch.Generator, curve: list[dict],
              row: dict[str, Any], first: int, opt_state: dict | None
              ) -> tuple[bool, int, dict | None]:
        """Before training: (reused, first epoch, optimizer state) for this trial, the network,
        generator, RNG and curve restored from the store where it has them; the row says so."""
        self.t0, self.base = time.perf_counter(), row["seconds_train"] or 0.0
        row.update(dense_key=self.key, dense_reused=True, images_train=0)
        try:
            entry = self.acquire()
        except early_stop.Stopped as stop:
            row["seconds_train_saved"] = (self.store.meta(self.key) or {}).get("seconds_train")
            raise stop from None
        if entry is not None:
            restore(entry.state, model, gen, curve)
            row["seconds_train_saved"] = entry.seconds_train
            self.log(f"dense network {self.key} reused from the store (trained in "
                     f"{entry.seconds_train:.1f}s elsewhere)")
            return True, first, opt_state
        row.update(dense_reused=False, seconds_train_saved=0.0)
        if self.resume is not None and self.resume.epoch >= first:   # on from where it stopped
            restore(self.resume.state, model, gen, curve)
            self.base = self.resume.seconds_train
            row["seconds_train_saved"] = self.resume.seconds_train
            return False, self.resume.epoch + 1, self.resume.state["optimizer"]
        return False, first, opt_state

    def acquire(self) -> Entry | None:
        """A trained entry to reuse, or None once this trial holds the claim and trains (on from
        ``resume`` when set). Raises Stopped (with the curve) when a stored curve stops here."""
        said = False
        while True:
            entry = self.store.entry(self.key)
            if entry is not None:
                stop = early_stop.replay(entry.state["curve"], self._reference_at, self.cfg)
                if stop is not None:
                    kept = [dict(r) for r in entry.state["curve"] if r["epoch"] <= stop[0]]
                    raise early_stop.Stopped(*stop, curve=kept)
                if entry.status == "trained":
                    return entry
            if self.store.claim(self.key):
                self.held, self.resume = True, entry
                return None
            if not said:
                who = self.store.holder(self.key) or {}
                self.log(f"dense network {self.key} is being trained by {who.get('host')}:"
                         f"{who.get('pid')}; waiting to reuse it")
                said = True
            time.sleep(self.store.poll_s)

    def _reference_at(self, epoch: int) -> list[dict] | None:
        if self.reference is None:
            return None
        return self.store.reference_curve(self.reference, epoch, self.log)

    def epoch_end(self, epoch: int, curve: list[dict], model: torch.nn.Module,
                  gen: torch.Generator, optimizer: dict) -> None:
        """After each training epoch: the live curve, the heartbeat, and the rung check."""
        self.store.write_curve(self.key, curve)
        self.store.heartbeat(self.key, epoch)
        if self.reference is None or epoch not in early_stop.rung_epochs(
                self.cfg.epochs, self.cfg.early_stop_rungs):
            return
        reference = self._reference_at(epoch)
        if early_stop.behind(curve, reference, self.cfg, epoch):
            self.commit(snapshot(model, gen, curve, optimizer), "stopped", epoch)
            raise early_stop.Stopped(epoch, early_stop.reason(curve, reference, self.cfg, epoch))

    def commit(self, state: dict[str, Any], status: str, epoch: int) -> None:
        """Store the entry this trial trained, and let the claim go."""
        seconds = self.base + time.perf_counter() - self.t0
        self.store.save(self.key, state, status=status, epoch=epoch, seconds_train=seconds,
                        keys=normalized_keys(self.cfg))
        self.release()

    def release(self) -> None:
        if self.held:
            self.store.release(self.key)
            self.held = False


def dense_phase(shared: SharedDense | None, run: Callable[[int, dict | None, Callable], None], *,
                model: torch.nn.Module, gen: torch.Generator, curve: list[dict],
                row: dict[str, Any], first: int, opt_state: dict | None,
                every: Callable[[int, dict], None], epoch_images: int) -> None:
    """A trial's dense training, through the store when there is one: reused, or trained by
    ``run(first, opt_state, on_epoch_end)`` with the live curve, heartbeat and rungs after each
    epoch (``every``: the trial's checkpoints), then stored. Counts images_train."""
    row.update(dense_reused=False, seconds_train_saved=0.0, images_train=row["images_train"] or 0)
    if shared is None:
        reused = False
    else:
        reused, first, opt_state = shared.start(model, gen, curve, row, first, opt_state)

    def on_epoch_end(epoch: int, optimizer: dict) -> None:
        row["images_train"] += epoch_images
        every(epoch, optimizer)
        if shared is not None:
            shared.epoch_end(epoch, curve, model, gen, optimizer)   # may raise Stopped

    if reused:
        return
    try:
        run(first, opt_state, on_epoch_end)
        if shared is not None:
            shared.commit(snapshot(model, gen, curve), "trained", shared.cfg.epochs)
    finally:
        if shared is not None:
            shared.release()     # failed or diverged: another trial may train it
