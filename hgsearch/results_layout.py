"""Where everything lies in a results folder: one object names every path.

``hgsearch trial --out RESULTS`` and ``hgsearch sweep`` (RESULTS = ``results/<sweep name>``)
write the same layout; ``select``, ``report`` and the benchmarks add theirs::

    trials/<trial_id>.parquet    one row per trial (hgsearch.results)
    curves/<trial_id>.parquet    one row per epoch
    models/<trial_id>.pt         the compact network (hgsearch.models.save_model)
    logs/<trial_id>.log          a sweep trial's log
    selected/                    hgsearch select: model.pt arch.json model.onnx model_card.json
    report/index.html            hgsearch report
    bench/                       hgsearch bench

The sweep's own files (sweep.json, optuna.db, tune/, sweep.lock) are ``search/records.py``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The per-trial folders, as ``ResultsFolder`` names them.
TRIAL_FOLDERS = ("trials", "curves", "models", "logs")


@dataclass(frozen=True)
class ResultsFolder:
    """The paths of one results folder ``root`` (nothing is created or read here)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))   # a str is accepted too

    @property
    def trials(self) -> Path:
        return self.root / "trials"

    @property
    def curves(self) -> Path:
        return self.root / "curves"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def row(self, trial_id: str) -> Path:
        return self.trials / f"{trial_id}.parquet"

    def curve(self, trial_id: str) -> Path:
        return self.curves / f"{trial_id}.parquet"

    def model(self, trial_id: str) -> Path:
        return self.models / f"{trial_id}.pt"

    def log(self, trial_id: str) -> Path:
        return self.logs / f"{trial_id}.log"

    def trial_files(self, trial_id: str) -> list[Path]:
        """A trial's model, curve and log (not its row, which is written last)."""
        return [self.model(trial_id), self.curve(trial_id), self.log(trial_id)]

    @property
    def selected(self) -> Path:
        return self.root / "selected"

    @property
    def report(self) -> Path:
        return self.root / "report" / "index.html"

    @property
    def bench(self) -> Path:
        return self.root / "bench"
