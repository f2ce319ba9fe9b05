"""Search spaces: the names of ``hgsearch.search.space``, ``space_file``, ``samplers`` and
``baseline`` under their older home (kept so that existing imports go on working)."""

from __future__ import annotations

from hgsearch.search.baseline import BASELINE_ID, BASELINE_INERT_GROUPS, BASELINE_VALUES
from hgsearch.search.samplers import make_sampler, sampler_names
from hgsearch.search.space import (
    DIRECTIONS,
    DISTRIBUTIONS,
    MODIFIERS,
    SECTIONS,
    SET_BY_SWEEP,
    Param,
    SamplerSpec,
    Space,
)
from hgsearch.search.space_file import (
    find_default_space,
    load_space,
    metric_columns,
    parse_space,
    space_problems,
)

__all__ = ["BASELINE_ID", "BASELINE_INERT_GROUPS", "BASELINE_VALUES", "DIRECTIONS",
           "DISTRIBUTIONS", "MODIFIERS", "SECTIONS", "SET_BY_SWEEP", "Param", "SamplerSpec",
           "Space", "find_default_space", "load_space", "make_sampler", "metric_columns",
           "parse_space", "sampler_names", "space_problems"]
