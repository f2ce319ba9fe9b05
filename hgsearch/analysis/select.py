"""The older names of ``select_trial.py`` (``select``, ``Selection``): ``analysis/commands.py``
still imports them from here; new code imports ``hgsearch.analysis.select_trial``."""

from __future__ import annotations

from hgsearch.analysis.select_trial import RULES, baseline_count, baseline_of, candidates_text
from hgsearch.analysis.select_trial import TrialChoice as Selection
from hgsearch.analysis.select_trial import select_trial as select

__all__ = ["RULES", "Selection", "baseline_count", "baseline_of", "candidates_text", "select"]
