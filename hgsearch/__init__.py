"""hgsearch: hyperparameter search for filter pruning with hierarchical group sparse regularization.

The public API is imported lazily, so that ``import hgsearch`` (and the CLI's light commands)
do not pay for importing torch, Ray or Optuna.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "TrialConfig": "hgsearch.config",
    "make_config": "hgsearch.config",
    "UserError": "hgsearch.errors",
    "build_model": "hgsearch.models",
    "load_model": "hgsearch.models",
    "save_model": "hgsearch.models",
    "load_dataset": "hgsearch.data",
    "run_trial": "hgsearch.trial",
    "load_results": "hgsearch.results",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hgsearch' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    # Without this, dir() and tab completion list only what is imported yet, not the lazy API.
    return sorted({*globals(), *_EXPORTS})
