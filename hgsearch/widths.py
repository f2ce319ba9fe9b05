"""The inner widths a trial builds: the trial keys ``widths`` (one per prunable unit) and
``width_scale`` (every inner width times one factor), checked before torch is imported.

A network of chosen widths trained from random initialization is the control a pruned network
is read against (Liu et al., ICLR 2019, "Rethinking the Value of Network Pruning"; the sweep's
controls, hgsearch/search/controls.py). ``hgsearch.models.build_model`` builds the widths.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

# Prunable units per arch: len(hgsearch.models.default_widths(arch)), one per BasicBlock and two
# per Bottleneck; here without torch so that config can check a widths list (tests/test_widths.py
# holds the two equal).
UNITS = {"resnet20": 9, "resnet32": 15, "resnet44": 21, "resnet56": 27, "resnet110": 54,
         "resnet18_small": 8, "resnet18": 8, "resnet34": 16, "resnet50": 32, "resnet101": 66,
         "resnet152": 100, "wide_resnet50_2": 32}


def parse_widths(text: str) -> list[int]:
    """``"16,8,12"`` -> ``[16, 8, 12]``; ValueError unless every item is an integer >= 1."""
    items = [int(item) for item in text.replace(" ", "").split(",")]
    if any(w < 1 for w in items):
        raise ValueError(text)
    return items


def widths_text(widths: Sequence[int]) -> str:
    """The ``widths`` key's value for a list of widths (``kept_channels`` of a row, say)."""
    return ",".join(str(int(w)) for w in widths)


def scaled_widths(full: Sequence[int], scale: float) -> list[int]:
    """Every width times ``scale``, rounded half up, at least 1."""
    return [max(1, math.floor(scale * w + 0.5)) for w in full]


def trial_widths(full: Sequence[int], widths: str, width_scale: float) -> list[int] | None:
    """The widths a trial builds given its arch's own ``full`` widths; None: the arch's own."""
    if widths:
        return parse_widths(widths)
    if width_scale != 1.0:
        return scaled_widths(full, width_scale)
    return None


def widths_problem(values: Mapping[str, Any]) -> str | None:
    """Why a config's ``widths`` / ``width_scale`` cannot be built, or None (one line)."""
    arch, widths, scale = values["arch"], values["widths"], values["width_scale"]
    if not scale > 0:
        return f"width_scale={scale!r}: must be above 0 and at most 1"
    if widths and scale != 1.0:
        return f"widths and width_scale={scale:g}: give one of them (widths is exact)"
    if (widths or scale != 1.0) and values["init_weights"]:
        key = "widths" if widths else f"width_scale={scale:g}"
        return f"{key}: only from random initialization; init_weights gives the network's widths"
    if not widths:
        return None
    units = UNITS[arch]
    try:
        found = parse_widths(widths)
    except ValueError:
        return (f"widths={widths!r}: expected {units} comma-separated integers >= 1, one per "
                f"prunable unit of {arch}")
    if len(found) != units:
        return f"widths: {arch} has {units} prunable units, got {len(found)} widths"
    return None
