"""Where everything lies in a results folder: one object names every path.

``hgsearch trial --out RESULTS`` and ``hgsearch sweep`` (RESULTS = ``results/<sweep name>``)
write the same layout; ``select``, ``report`` and the benchmarks add theirs::

    trials/<trial_id>.parquet    one row per trial (hgsearch.results)
    curves/<trial_id>.parquet    one row per epoch
    models/<trial_id>.pt         the compact network (hgsearch.models.save_model)
    logs/<trial_id>.log          a sweep trial's log, written as the trial runs
    logs/<trial_id>.status.json  while a sweep trial runs: its phase, epoch, validation accuracy
    selected/                    hgsearch select: model.pt arch.json model.onnx model_card.json
    report/index.html            hgsearch report
    bench/                       hgsearch bench

The sweep's own files (sweep.json, optuna.db, tune/, sweep.lock) are ``search/records.py``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# The per-trial folders, as ``ResultsFolder`` names them.
TRIAL_FOLDERS = ("trials", "curves", "models", "logs")


def _per_trial(folder: str, suffix: str) -> Callable[[ResultsFolder, str], Path]:
    def path(self: ResultsFolder, trial_id: str) -> Path:
        return self.root / folder / f"{trial_id}{suffix}"
    path.__doc__ = f"``{folder}/<trial_id>{suffix}``"
    return path


@dataclass(frozen=True)
class ResultsFolder:
    """The paths of one results folder ``root`` (nothing is created or read here)."""

    root: Path
    trials: Path = field(init=False)      # the folders of the per-trial files
    curves: Path = field(init=False)
    models: Path = field(init=False)
    logs: Path = field(init=False)
    selected: Path = field(init=False)    # hgsearch select's export
    report: Path = field(init=False)      # the report page, report/index.html
    bench: Path = field(init=False)       # benchmark reports

    def __post_init__(self) -> None:
        root = Path(self.root)   # a str is accepted too
        paths = {"root": root, **{name: root / name for name in TRIAL_FOLDERS},
                 "selected": root / "selected", "report": root / "report" / "index.html",
                 "bench": root / "bench"}
        for name, path in paths.items():
            object.__setattr__(self, name, path)

    row = _per_trial("trials", ".parquet")
    curve = _per_trial("curves", ".parquet")
    model = _per_trial("models", ".pt")
    log = _per_trial("logs", ".log")

    def trial_files(self, trial_id: str) -> list[Path]:
        """A trial's model, curve and log (not its row, which is written last)."""
        return [self.model(trial_id), self.curve(trial_id), self.log(trial_id)]
