"""The score cache: a one-shot prune scores a trained network once, every prune value reuses it.

Trials of one prune ladder (issue 11) share the dense network (dense_store.py) and, with
``prune_steps == 1``, also score that same network on the same sample: their filter scores are
equal. ``ScoreCache`` is a Criterion (pruning/criteria.py) that memoizes the criterion's call
in the dense store, beside the network's entry::

    root/<dense_key>/scores/<score_key>/scores.pt   {"scores": [per-block float64], "generator"}
    root/<dense_key>/scores/<score_key>/claim       who scores it now (DenseStore's claims)

``score_key`` hashes everything the call's result depends on: the criterion, the batch size,
the network's state, the sample (x, y), the generator's state (``random`` draws from it), the
device type and the hgsearch and torch versions. So a hit is exact by construction; on a hit the
generator is put where the scoring would have left it, and everything after is identical.
Concurrent trials that need one score wait for the one scoring it (as for dense networks).
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from typing import Any

import torch

from hgsearch.config import TrialConfig
from hgsearch.dense_store import DenseStore
from hgsearch.fileio import version_of
from hgsearch.models import ResNet
from hgsearch.pruning import Criterion, get_criterion
from hgsearch.shared_dense import SharedDense


def score_images(cfg: TrialConfig, net: ResNet, train_size: int) -> int:
    """Images one scoring round of ``net`` forwards: loss_increase masks each prunable filter in
    turn (plus the unmasked pass); the other criteria count the sample once."""
    n = min(cfg.score_samples, train_size)
    return n * (sum(net.widths) + 1) if cfg.score_method == "loss_increase" else n


def _update(h: Any, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{tuple(t.shape)}{t.dtype}".encode())
    h.update(t.flatten().view(torch.uint8).numpy().data)


def score_key(name: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *,
              batch_size: int, generator: torch.Generator) -> str:
    """The content address (16 hex) of one criterion call: what its result depends on."""
    h = hashlib.sha256()
    param = next(model.parameters())
    h.update(f"{name}|{batch_size}|{param.device.type}|{version_of('hgsearch')}|"
             f"{torch.__version__}".encode())
    for k, v in model.state_dict().items():
        h.update(k.encode())
        _update(h, v)
    for t in (x, y, generator.get_state()):
        _update(h, t)
    return h.hexdigest()[:16]


class ScoreCache:
    """A Criterion that looks the call up in ``store`` under ``dense_key`` before scoring, and
    stores what it scored. Without a store (or key) it just scores. ``reused`` (and ``calls``,
    the criterion's own calls) say what happened."""

    def __init__(self, criterion: str | Criterion, store: DenseStore | None,
                 dense_key: str | None, log: Callable[[str], None] = lambda _m: None) -> None:
        self.criterion = get_criterion(criterion) if isinstance(criterion, str) else criterion
        self.name = criterion if isinstance(criterion, str) else criterion.name   # the key's
        self.store = store if dense_key is not None else None
        self.dense_key, self.log = dense_key, log
        self.reused, self.calls = False, 0

    @classmethod
    def of(cls, shared: SharedDense, cfg: TrialConfig, log: Callable[[str], None]) -> ScoreCache:
        """A trial's criterion: cached for a one-shot prune (``prune_steps == 1``) with a store;
        several rounds score networks that differ from trial to trial, so those just score."""
        one_shot = cfg.prune_steps == 1
        return cls(cfg.score_method, shared.store if one_shot else None, shared.key, log)

    def __call__(self, model: ResNet, x: torch.Tensor, y: torch.Tensor, *, batch_size: int,
                 generator: torch.Generator) -> list[torch.Tensor]:
        if self.store is None:
            return self._score(model, x, y, batch_size, generator)
        key = score_key(self.name, model, x, y, batch_size=batch_size, generator=generator)
        rel, said = f"{self.dense_key}/scores/{key}", False
        while True:
            if (hit := self._load(rel)) is not None:
                generator.set_state(hit["generator"])     # as the scoring would have left it
                self.reused = True
                self.log(f"filter scores {key} of dense network {self.dense_key} reused")
                return list(hit["scores"])
            if self.store.claim(rel):
                try:
                    if self._load(rel) is None:     # not committed while we looked: score it
                        scores = self._score(model, x, y, batch_size, generator)
                        self._save(rel, scores, generator.get_state())
                        return scores
                finally:
                    self.store.release(rel)
                continue
            if not said:
                self.log(f"filter scores {key} are being computed by another trial; waiting")
                said = True
            time.sleep(self.store.poll_s)

    def _score(self, model: ResNet, x: torch.Tensor, y: torch.Tensor, batch_size: int,
               generator: torch.Generator) -> list[torch.Tensor]:
        self.calls += 1
        return self.criterion(model, x, y, batch_size=batch_size, generator=generator)

    def _load(self, rel: str) -> dict[str, Any] | None:
        raw = self.store.read_bytes(f"{rel}/scores.pt")     # a folder or a URI, as the store
        if raw is None:
            return None
        try:
            return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        except Exception:       # unreadable (a foreign or damaged file): scored again
            return None

    def _save(self, rel: str, scores: list[torch.Tensor], gen_state: torch.Tensor) -> None:
        buf = io.BytesIO()
        torch.save({"scores": [s.detach().cpu() for s in scores], "generator": gen_state}, buf)
        self.store.write_bytes(f"{rel}/scores.pt", buf.getvalue())
