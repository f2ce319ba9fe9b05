"""Trial checkpoints: where a trial resumes after its process or node died.

A trial saves its state at phase boundaries (after HGSR training, after pruning) and every
``checkpoint_every`` epochs. The state holds only tensors, numbers, strings, lists and dicts, so
it loads with ``torch.load(weights_only=True)``. Where it is kept is the caller's business: a file
(``FileCheckpointer``), or a Ray Tune checkpoint that follows the trial to another node.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from hgsearch.fileio import atomic_path

# The order a trial passes through; a state's phase says which ones are complete.
PHASES = ("train", "trained", "pruned", "finetune")


class Checkpointer(Protocol):
    def load(self) -> dict[str, Any] | None:
        """The last saved state, or None when the trial starts afresh."""

    def save(self, state: dict[str, Any]) -> None:
        """Keep ``state`` so that a restarted trial can ``load`` it."""


def write_state(state: dict[str, Any], path: str | Path) -> None:
    """torch.save under a temporary name, then rename: a crash never leaves half a state."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def read_state(path: str | Path) -> dict[str, Any] | None:
    path = Path(path)
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


class FileCheckpointer:
    """Keeps a trial's state in one file (for a single machine or a shared filesystem)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, Any] | None:
        return read_state(self.path)

    def save(self, state: dict[str, Any]) -> None:
        write_state(state, self.path)
