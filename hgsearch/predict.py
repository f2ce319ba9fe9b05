"""Classify image files with a trained model, exactly as the trial preprocessed its data.

``hgsearch predict MODEL IMAGES...`` and ``predict(model, images)`` read ``model.pt`` (PyTorch, as
trials and ``hgsearch select`` write it) or ``model.onnx`` (onnxruntime, from ``hgsearch
select``). Both files carry the preprocessing (``preprocessing_of``): each image is decoded to RGB
with its EXIF orientation, its shorter side resized to the side the file records
(``resize_side``: ``image_size``, or for an imagefolder model round(image_size / 0.875); a file
written before the side was recorded resized to ``image_size``, the rule of its day) (bilinear,
antialiased) and the centre ``image_size`` square cropped, exactly by the function the data
loaders use (``data/images.py``), then scaled to ``(x / 255 - mean) / std`` per channel as
float32 in NCHW layout.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hgsearch.errors import UserError

INPUT_RANGE = "(x / 255 - mean) / std per channel, x the 0..255 RGB value"


def preprocessing_of(*, image_size: int, mean: Sequence[float] | None,
                     std: Sequence[float] | None, dataset: str | None = None,
                     resize_side: int | None = None) -> dict[str, Any]:
    """The preprocessing record that model_card.json, arch.json and the ONNX metadata carry.

    ``resize_side``: the shorter side before the centre crop, as the model file records it; a
    file from before it was recorded resized to ``image_size`` (the rule then), so None is that.
    """
    from hgsearch.data.images import resize_rule

    side = int(image_size) if resize_side is None else int(resize_side)
    return {"image_size": int(image_size), "resize_side": side,
            "resize": resize_rule(int(image_size), side), "channel_order": "RGB",
            "layout": "NCHW", "input_dtype": "float32", "input_range": INPUT_RANGE,
            "mean": None if mean is None else [float(v) for v in mean],
            "std": None if std is None else [float(v) for v in std], "dataset": dataset}


@dataclass(frozen=True)
class Prediction:
    """One image's predicted class, its softmax probability and its index."""

    file: str
    index: int
    label: str
    probability: float


def read_model_pt(path: Path) -> tuple[Any, dict[str, Any], list[str]]:
    """(model, preprocessing, class names) of a model.pt written by a trial."""
    import torch

    from hgsearch.models import load_model

    model = load_model(path)  # names the file on any problem; weights_only load
    extra = torch.load(path, map_location="cpu", weights_only=True).get("extra") or {}
    if not extra.get("mean") or not extra.get("std") or not extra.get("image_size"):
        raise UserError(f"{path}: holds no preprocessing (mean, std, image_size); it was "
                        "written by an older hgsearch: rerun its trial to predict with it")
    pre = preprocessing_of(image_size=extra["image_size"], mean=extra["mean"], std=extra["std"],
                           dataset=extra.get("dataset"), resize_side=extra.get("resize_side"))
    return model, pre, [str(c) for c in extra.get("classes") or range(model.num_classes)]


def onnx_metadata(preprocessing: Mapping[str, Any], classes: Sequence[str]) -> dict[str, str]:
    """ONNX ``metadata_props`` (str to str): each preprocessing field and the classes, as JSON."""
    meta = {key: json.dumps(value) for key, value in preprocessing.items()}
    meta["classes"] = json.dumps(list(classes))
    return meta


def _read_onnx(path: Path) -> tuple[Any, dict[str, Any], list[str]]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError("predicting with a .onnx file needs onnxruntime (pip install "
                        "onnxruntime); or give the model.pt beside it") from None
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:
        raise UserError(f"{path}: not a readable ONNX model ({err.__class__.__name__})") from None
    meta = session.get_modelmeta().custom_metadata_map
    try:
        pre = {key: json.loads(meta[key]) for key in ("image_size", "mean", "std")}
        pre = preprocessing_of(**pre, dataset=json.loads(meta.get("dataset", "null")),
                               resize_side=json.loads(meta.get("resize_side", "null")))
        classes = [str(c) for c in json.loads(meta["classes"])]
    except (KeyError, ValueError, TypeError):
        raise UserError(f"{path}: its metadata holds no preprocessing (image_size, mean, std, "
                        "classes); export it again with `hgsearch select`") from None
    return session, pre, classes


def load_images(files: Sequence[Path], preprocessing: Mapping[str, Any]) -> np.ndarray:
    """(N, 3, S, S) float32 network input of ``files``, preprocessed as in training.

    Decoding is ``data.images.decode_images`` and scaling is ``DeviceData.normalize``: the very
    functions a trial's data goes through, not a copy of them.
    """
    import torch

    from hgsearch.data.device import DeviceData
    from hgsearch.data.images import decode_images

    size = int(preprocessing["image_size"])
    resize = int(preprocessing.get("resize_side") or size)
    x = torch.from_numpy(decode_images(list(files), size=size, resize=resize))
    data = DeviceData(x, torch.zeros(len(x), dtype=torch.int64), device="cpu",
                      mean=tuple(preprocessing["mean"]), std=tuple(preprocessing["std"]))
    return data.normalize(data.x).numpy()


def image_files(paths: Sequence[str | Path]) -> list[Path]:
    """The image files among ``paths``, a folder standing for the images directly inside it."""
    from hgsearch.data.images import list_images

    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = list_images(path)
            if not found:
                raise UserError(f"{path}: no image files in this folder")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"{path}: no such image file or folder")
    if not files:
        raise UserError("no images given: pass image files or folders of images")
    return files


def predict(model: str | Path, images: Sequence[str | Path], *, batch_size: int = 64,
            on_unreadable: Callable[[Path, str], None] | None = None) -> list[Prediction]:
    """The most probable class of each image (files, or folders of them) under ``model``.

    ``model`` is a ``.pt`` file (PyTorch on CPU) or a ``.onnx`` file (onnxruntime on CPU). An
    image that cannot be decoded raises a UserError naming it, unless ``on_unreadable`` is
    given: then it is called with the file and the one-line reason, and the image is skipped.
    """
    path = Path(model)
    if not path.is_file():
        raise UserError(f"{path}: no such model file (expected model.pt or model.onnx)")
    if path.suffix not in (".pt", ".onnx"):
        raise UserError(f"{path}: expected a .pt or .onnx model file")
    runner, pre, classes = _read_onnx(path) if path.suffix == ".onnx" else read_model_pt(path)
    files = image_files(images)
    out: list[Prediction] = []
    for start in range(0, len(files), batch_size):
        chunk, x = _readable(files[start:start + batch_size], pre, on_unreadable)
        if not chunk:
            continue
        logits = _logits(runner, x, onnx=path.suffix == ".onnx")
        z = logits - logits.max(axis=1, keepdims=True)
        prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        for f, p in zip(chunk, prob):
            k = int(np.argmax(p))
            out.append(Prediction(str(f), k, classes[k] if k < len(classes) else str(k),
                                  float(p[k])))
    return out


def _readable(files: list[Path], pre: Mapping[str, Any],
              on_unreadable: Callable[[Path, str], None] | None) -> tuple[list[Path], np.ndarray]:
    """The files of a batch that decode, and their input; the others go to ``on_unreadable``."""
    try:
        return files, load_images(files, pre)
    except UserError:
        if on_unreadable is None:
            raise
    # One file spoilt the batch: decode them one by one (only then; a clean batch is decoded
    # by the thread pool in one go) to name each unreadable one and keep the rest.
    kept, arrays = [], []
    for f in files:
        try:
            arrays.append(load_images([f], pre))
        except UserError as err:
            on_unreadable(f, str(err))
            continue
        kept.append(f)
    return kept, np.concatenate(arrays) if arrays else np.empty((0,))


def _logits(runner: Any, x: np.ndarray, *, onnx: bool) -> np.ndarray:
    if onnx:
        return np.asarray(runner.run(None, {runner.get_inputs()[0].name: x})[0])
    import torch

    with torch.no_grad():
        return runner(torch.from_numpy(x)).numpy()

