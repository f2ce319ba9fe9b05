"""The filter scorer sees training images only (docs/method.md part 2: S is drawn from the training
split; scoring on validation images would leak the split that selects models)."""

from __future__ import annotations

import torch

from hgsearch.config import make_config
from hgsearch.data import DeviceData, load_dataset
from hgsearch.trial import run_trial


def _normalized_rows(data, split: str) -> set[bytes]:
    """Each image of ``split``, normalized as the trial normalizes it, as bytes."""
    dd = DeviceData(getattr(data, f"{split}_x"), getattr(data, f"{split}_y"), mean=data.mean,
                    std=data.std, device="cpu")
    return {img.numpy().tobytes() for img in dd.normalize(dd.x)}


def test_prune_scores_on_training_images_only(tiny, monkeypatch):
    import hgsearch.phases as trial_phases

    seen: list[torch.Tensor] = []
    real = trial_phases.prune

    def spy(model, x, y, **kwargs):
        seen.append(x.detach().cpu().clone())
        return real(model, x, y, **kwargs)

    monkeypatch.setattr(trial_phases, "prune", spy)
    cfg = {**tiny, "prune_ratio": 0.5, "finetune_epochs": 0, "score_samples": 64,
           "trial_id": "split"}
    assert run_trial(cfg, log=None)["status"] == "ok"
    assert len(seen) == 1
    data = load_dataset(make_config(cfg))
    train, val, test = (_normalized_rows(data, s) for s in ("train", "val", "test"))
    assert not (train & val) and not (train & test)    # the splits are told apart by content
    images = [img.contiguous().numpy().tobytes() for img in seen[0]]
    assert all(img in train for img in images), "the scorer was fed images not of the train split"
    assert not any(img in val or img in test for img in images)
    assert len(images) == 64
