"""What the reuse tests compare: a trial that reused a network (or its scores) against one that
computed everything itself - its row, curve and model must be the same."""

from __future__ import annotations

from hgsearch.models import load_model
from hgsearch.results import load_curves

# Where, when, how fast, and what was reused or processed here: not what came out.
NOT_COMPARED = {"trial_id", "hostname", "started_at", "finished_at", "dense_key", "dense_reused",
                "seconds_train_saved", "images_train", "images_score", "scores_reused"}


def differing(a: dict, b: dict) -> list[str]:
    """The columns in which rows ``a`` and ``b`` differ, those of NOT_COMPARED and timings aside."""
    skip = NOT_COMPARED | {k for k in a if k.startswith(("seconds_", "latency_"))}
    return [k for k in a if k not in skip and a[k] != b[k]]


def curve_of(out_dir: str, trial_id: str) -> list[dict]:
    """A trial's curve without its id and timings."""
    df = load_curves(out_dir)
    df = df[df.trial_id == trial_id].drop(columns=["trial_id", "images_per_s", "seconds"])
    return df.to_dict("records")


def model_of(out_dir: str, trial_id: str) -> dict:
    return load_model(f"{out_dir}/models/{trial_id}.pt").state_dict()
