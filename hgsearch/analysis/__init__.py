"""Analysis of sweep results: Pareto front, hypervolume, one selected model, an HTML report.

Functions take pandas DataFrames of trial rows (``hgsearch.load_results``), so a single trial,
a sweep, a running sweep or several sweeps concatenated are analysed alike. Names are imported
lazily, so that registering the CLI's subcommands does not import pandas. The selection rules:
``select_trial`` (module ``select_trial.py``).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DEFAULT_OBJECTIVES": "front", "default_reference": "front", "front_table": "front",
    "hypervolume": "front", "hypervolume_history": "front", "pareto_front": "front",
    "parse_objectives": "front", "read_objectives": "front", "usable": "front",
    "left_out": "front", "candidates_text": "select_trial", "searched_keys": "tables",
    "RULES": "select_trial", "TrialChoice": "select_trial", "select_trial": "select_trial",
    "baseline_of": "select_trial",
    "export_selection": "export", "write_report": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hgsearch.analysis' has no attribute {name!r}")
    return getattr(importlib.import_module(f"hgsearch.analysis.{_EXPORTS[name]}"), name)
