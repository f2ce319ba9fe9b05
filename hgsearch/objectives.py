"""An objective's direction as written -> "max" | "min": the one table both sides read.

Optuna spells directions out in full and a sweep.json may hold either spelling. The search
(``search.space_file``) validates a space's objectives with it and the analysis
(``analysis.front``) parses them with it, so it lives below both.
"""

from __future__ import annotations

DIRECTIONS = {"max": "max", "maximize": "max", "min": "min", "minimize": "min"}
