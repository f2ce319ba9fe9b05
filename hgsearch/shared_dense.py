"""One trial's side of shared dense training (hgsearch/dense_store.py holds the store).

``SharedDense.run`` gives a trial its trained dense network: the store's when an equal network
was trained already; else it waits while another trial trains it, or claims it, trains it (live
curve, heartbeat and early-stopping rungs after each epoch) and commits it. Without a store the
network is just trained.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from hgsearch import early_stop
from hgsearch.config import TrialConfig
from hgsearch.dense_store import (
    DenseStore,
    Entry,
    data_fingerprint,
    dense_key,
    normalized_keys,
    reference_config,
    restore,
    snapshot,
)
from hgsearch.runtime import Runtime
from hgsearch.train import Diverged


class SharedDense:
    """One trial's dense training, through the store when there is one: reused, waited for, or
    claimed, trained (live curve, heartbeat and early-stopping rungs after each epoch) and
    stored. Without a store it is just trained."""

    def __init__(self, store: DenseStore | None, cfg: TrialConfig, data: Any, runtime: Runtime,
                 log: Callable[[str], None]) -> None:
        self.store, self.cfg, self.log, self.held = store, cfg, log, False
        self.key: str | None = None
        self.rungs: early_stop.Rungs | None = None
        if store is None and early_stop.active(cfg):
            log("early_stop: no dense store (its reference lives there): not stopping")
        if store is not None:
            fingerprint = data_fingerprint(data)
            self.key = dense_key(cfg, data, runtime, fingerprint=fingerprint)
            ref = dense_key(reference_config(cfg), data, runtime, fingerprint=fingerprint)
            self.rungs = early_stop.Rungs(
                cfg, lambda e: early_stop.reference_curve(store, ref, e, log))

    def run(self, train: Callable[..., Any], *, model: torch.nn.Module,
            gen: torch.Generator, curve: list[dict], row: dict[str, Any], first: int,
            opt_state: dict | None, every: Callable[[int, dict], None], epoch_images: int,
            ) -> None:
        """Give ``model`` (and ``gen``, the RNG, ``curve``) the trained network: the store's, or
        ``train(start_epoch=, optimizer_state=, on_epoch_end=)``'s. ``every``: the trial's own
        checkpoints. Fills dense_key, dense_reused, seconds_train_saved, images_train; may raise
        Stopped (``curve`` then is the curve the trial ends with)."""
        t0, base = time.perf_counter(), row["seconds_train"] or 0.0
        row.update(dense_key=self.key, dense_reused=False, seconds_train_saved=0.0)
        entry = self._acquire(row, curve) if self.store is not None else None
        if entry is not None and entry.status == "trained":
            restore(entry.state, model, gen, curve)
            _reused(row, entry)
            self.log(f"dense network {self.key} reused from the store (trained in "
                     f"{entry.seconds_train:.1f}s)")
            return
        if entry is not None and entry.epoch >= first:     # stopped there: train on from it
            restore(entry.state, model, gen, curve)
            first, opt_state, base = entry.epoch + 1, entry.state["optimizer"], entry.seconds_train
            row["seconds_train_saved"] = base

        def on_epoch_end(epoch: int, optimizer: dict) -> None:
            row["images_train"] += epoch_images
            every(epoch, optimizer)
            if self.held:
                self.store.write_curve(self.key, curve)
                self.store.heartbeat(self.key, epoch)
                if why := self.rungs.check(epoch, curve):
                    self._commit(snapshot(model, gen, curve, optimizer), "stopped", epoch,
                                 base + time.perf_counter() - t0)
                    raise early_stop.Stopped(epoch, why)

        try:
            train(start_epoch=first, optimizer_state=opt_state, on_epoch_end=on_epoch_end)
            if self.held:
                self._commit(snapshot(model, gen, curve), "trained", self.cfg.epochs,
                             base + time.perf_counter() - t0)
        except Diverged as err:
            if self.held:       # retrained, it would diverge again: its reusers end at once
                self._commit({"curve": [dict(r) for r in curve], "error": str(err)},
                             "diverged", err.epoch, base + time.perf_counter() - t0)
            raise
        finally:
            self._release()     # failed: another trial may train it

    def _acquire(self, row: dict[str, Any], curve: list[dict]) -> Entry | None:
        """A trained entry to reuse; else the claim, and a stopped entry to train on from, if
        any. Waits while another trial trains it; raises Stopped where a stored curve stops."""
        said, seen, entry = False, object(), None
        while True:
            # state.pt is read only when meta.json changed: a waiter polls every poll_s, and on
            # an object store each read of the network is a download.
            meta = self.store.meta(self.key) or {}
            if (mark := _mark(meta)) != seen:
                entry, seen = self.store.entry(self.key), mark
            if entry is not None:
                if (stop := self.rungs.replay(entry.state["curve"])) is not None:
                    _reused(row, entry)
                    curve[:] = [dict(r) for r in entry.state["curve"] if r["epoch"] <= stop.epoch]
                    raise stop
                if entry.status == "diverged":
                    _reused(row, entry)
                    curve[:] = [dict(r) for r in entry.state["curve"]]
                    raise Diverged(entry.state["error"], entry.epoch)
                if entry.status == "trained":
                    return entry
            if self.store.claim(self.key):
                self.held = True
                again = self.store.meta(self.key) or {}      # committed while we looked?
                if _mark(again) == seen:
                    # Nothing was: train on from the stopped entry, or from the start. With
                    # the claim ours no commit is under way, so a meta.json that its state.pt
                    # does not match (a commit cut short) is trained over afresh.
                    return entry
                self._release()
                continue
            if not said:
                who = self.store.holder(self.key) or {}
                self.log(f"dense network {self.key} is being trained by {who.get('host')}:"
                         f"{who.get('pid')}; waiting to reuse it")
                said = True
            time.sleep(self.store.poll_s)

    def _commit(self, state: dict[str, Any], status: str, epoch: int, seconds: float) -> None:
        self.store.save(self.key, state, status=status, epoch=epoch, seconds_train=seconds,
                        keys=normalized_keys(self.cfg))
        self._release()

    def _release(self) -> None:
        if self.held:
            self.store.release(self.key)
            self.held = False


def _reused(row: dict[str, Any], entry: Entry) -> None:
    """``row``'s network came from ``entry``; images_train stays what this trial trained."""
    row.update(dense_reused=True, seconds_train_saved=entry.seconds_train)


def _mark(meta: dict[str, Any]) -> tuple:
    """What tells one commit of an entry from another."""
    return meta.get("status"), meta.get("epoch"), meta.get("commit")
