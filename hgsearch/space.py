"""Search spaces under their older home: the names of ``hgsearch.search.space``, ``space_file``,
``samplers`` and ``baseline``, looked up there (kept so that existing imports go on working)."""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "baseline": ("BASELINE_ID", "BASELINE_INERT_GROUPS", "BASELINE_VALUES"),
    "samplers": ("make_sampler", "sampler_names"),
    "space": ("DIRECTIONS", "DISTRIBUTIONS", "MODIFIERS", "SECTIONS", "SET_BY_SWEEP", "Param",
              "SamplerSpec", "Space"),
    "space_file": ("find_default_space", "load_space", "metric_columns", "parse_space",
                   "space_problems"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_HOME_OF)


def __getattr__(name: str) -> Any:
    if name not in _HOME_OF:
        raise AttributeError(f"module 'hgsearch.space' has no attribute {name!r}")
    return getattr(importlib.import_module(f"hgsearch.search.{_HOME_OF[name]}"), name)
