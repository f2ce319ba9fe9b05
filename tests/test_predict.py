"""hgsearch predict: model.pt and model.onnx classify image files as the trial's data pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hgsearch.analysis.export import export_selection
from hgsearch.analysis.select_trial import select_trial
from hgsearch.cli import main
from hgsearch.data.device import DeviceData
from hgsearch.data.synthetic import make_synthetic
from hgsearch.errors import UserError
from hgsearch.models import build_model, load_model, save_model
from hgsearch.predict import load_images, predict
from tests.data_fixtures import write_imagefolder
from tests.results_fixtures import FEED, write_results


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A results folder with the knee exported (ONNX too) and a folder of PNG test images."""
    pytest.importorskip("onnxruntime")
    folder = tmp_path_factory.mktemp("results")
    df = write_results(folder)
    export_selection(folder, select_trial(df, rule="knee"), onnx=True)
    images = folder / "images"
    images.mkdir()
    x, _ = make_synthetic(12, seed=3, split="test")
    for i, img in enumerate(x):
        Image.fromarray(img.transpose(1, 2, 0)).save(images / f"img{i:02d}.png")  # lossless
    return folder / "selected", images, torch.from_numpy(x)


def test_pt_and_onnx_print_the_same_classes_as_the_training_pipeline(shipped, capsys):
    selected, images, x = shipped
    outputs = {}
    for name in ("model.pt", "model.onnx"):
        assert main(["predict", str(selected / name), str(images)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 12
        outputs[name] = [line.split("\t")[:2] for line in lines]
    assert outputs["model.pt"] == outputs["model.onnx"]
    # the second computation: the images as a trial sees them (DeviceData on the uint8 split)
    data = DeviceData(x, torch.zeros(len(x), dtype=torch.int64), mean=tuple(FEED["mean"]),
                      std=tuple(FEED["std"]), device="cpu")
    with torch.no_grad():
        logits = load_model(selected / "model.pt")(next(data.eval_batches(64))[0])
    expected = [FEED["classes"][k] for k in logits.argmax(1).tolist()]
    assert [label for _, label in outputs["model.pt"]] == expected
    # the probabilities too: the same input to float rounding, and each image its own
    prob = torch.softmax(logits, 1).max(1).values.numpy()
    got = [p.probability for p in predict(selected / "model.pt", [images])]
    np.testing.assert_allclose(got, prob, rtol=1e-6)
    assert len({round(float(p), 5) for p in prob}) > 6


def test_python_api_probabilities_agree(shipped):
    selected, images, _ = shipped
    pt = predict(selected / "model.pt", [images])
    ox = predict(selected / "model.onnx", sorted(images.iterdir()))
    assert [p.index for p in pt] == [p.index for p in ox]
    np.testing.assert_allclose([p.probability for p in pt], [p.probability for p in ox],
                               rtol=1e-4)


def test_exports_say_how_to_feed_the_model(shipped):
    onnx = pytest.importorskip("onnx")
    selected, _, _ = shipped
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(selected / "model.onnx"))
            .metadata_props}
    card = json.loads((selected / "model_card.json").read_text())
    arch = json.loads((selected / "arch.json").read_text())
    for pre, classes in ((meta, meta["classes"]), (card["preprocessing"], card["classes"]),
                         (arch["preprocessing"], arch["classes"])):
        assert pre["mean"] == FEED["mean"] and pre["std"] == FEED["std"]
        assert pre["image_size"] == 32 and pre["channel_order"] == "RGB"
        assert pre["layout"] == "NCHW" and pre["input_dtype"] == "float32"
        assert "shorter side" in pre["resize"] and "255" in pre["input_range"]
        assert classes == FEED["classes"]


def test_non_square_images_are_resized_as_the_loader_does(tmp_path):
    from hgsearch.config import make_config
    from hgsearch.data import load_dataset

    fixture = write_imagefolder(tmp_path / "data", size=40)
    # a wide image in the val split: resized and centre-cropped by the loader and by predict
    wide = tmp_path / "data" / "val" / "cat" / "wide.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 50, 3), np.uint8)).save(wide)
    cfg = make_config({"dataset": "imagefolder", "data_dir": str(tmp_path / "data"),
                       "image_size": 24, "cache_dir": str(tmp_path / "cache")})
    data = load_dataset(cfg)
    files = sorted(p for p in (tmp_path / "data" / "val").rglob("*")
                   if p.suffix.lower() in (".png", ".jpg", ".jpeg") and p.name[0] != ".")
    pre = {"image_size": 24, "mean": list(data.mean), "std": list(data.std),
           "dataset": "imagefolder", "resize_side": round(24 / 0.875)}   # then the crop
    got = load_images([wide], pre)
    split = DeviceData(data.test_x, data.test_y, mean=data.mean, std=data.std, device="cpu")
    ref = next(split.eval_batches(1000))[0].numpy()
    assert any(np.array_equal(got[0], r) for r in ref)   # bit-identical to one loader image
    assert len(files) == len(ref) and fixture.classes == data.classes


@pytest.mark.parametrize("recorded,side", [(None, 24), (27, 27)])
def test_the_resize_side_is_the_files_own_and_older_files_keep_theirs(tmp_path, recorded, side):
    # A model file from before the side was recorded was trained on images resized to
    # image_size; one written now says its side. predict follows the file, not today's rule.
    from hgsearch.predict import read_model_pt

    extra = {"image_size": 24, "mean": [0.5] * 3, "std": [0.25] * 3, "dataset": "imagefolder",
             **({} if recorded is None else {"resize_side": recorded})}
    save_model(build_model("resnet20", 3), tmp_path / "m.pt", extra=extra)
    _, pre, _ = read_model_pt(tmp_path / "m.pt")
    assert pre["resize_side"] == side and f"scaled to {side} " in pre["resize"]
    wide = tmp_path / "wide.png"
    pixels = np.random.default_rng(1).integers(0, 255, (30, 50, 3), np.uint8)
    Image.fromarray(pixels).save(wide)
    # torchvision's rule: the shorter side to `side`, the longer int(side * long / short), then
    # CenterCrop's int(round((length - 24) / 2)) offsets
    by_hand = Image.fromarray(pixels).resize((int(side * 50 / 30), side), Image.BILINEAR,
                                             reducing_gap=None)
    left = int(round((by_hand.width - 24) / 2))
    top = int(round((by_hand.height - 24) / 2))
    crop = np.asarray(by_hand.crop((left, top, left + 24, top + 24)), np.float32)
    want = (crop.transpose(2, 0, 1) / 255 - 0.5) / 0.25
    assert np.allclose(load_images([wide], pre)[0], want, atol=1e-5)


@pytest.mark.parametrize("what", ["no model", "not a model", "bad image", "no images",
                                  "old model"])
def test_user_errors_are_one_line_exit_2(tmp_path, capsys, what):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    model = tmp_path / "model.pt"
    save_model(build_model("resnet20", 10, [2] * 9), model, extra=FEED)
    args, message = {
        "no model": ([str(tmp_path / "nope.pt"), str(img)], "nope.pt: no such model file"),
        "not a model": ([str(img), str(img)], "expected a .pt or .onnx"),
        "bad image": ([str(model), str(tmp_path / "b.png")], "b.png"),
        "no images": ([str(model), str(tmp_path)], "no image files"),
        "old model": ([str(tmp_path / "old.pt"), str(img)], "holds no preprocessing"),
    }[what]
    if what == "bad image":
        (tmp_path / "b.png").write_bytes(b"not a png")
    if what == "no images":
        img.unlink()
        model.rename(tmp_path / "m.pt")
        args[0] = str(tmp_path / "m.pt")
    if what == "old model":
        save_model(build_model("resnet20", 10, [2] * 9), tmp_path / "old.pt")
    assert main(["predict", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_an_unreadable_image_is_named_and_the_rest_classified(shipped, tmp_path, capsys):
    selected, images, _ = shipped
    folder = tmp_path / "mixed"
    folder.mkdir()
    for src in sorted(images.iterdir())[:3]:
        (folder / src.name).write_bytes(src.read_bytes())
    (folder / "img01b.png").write_bytes(b"not a png")         # sorts among the good ones
    assert main(["predict", str(selected / "model.pt"), str(images)]) == 0
    whole = dict(line.split("\t")[:2] for line in capsys.readouterr().out.splitlines())
    assert main(["predict", str(selected / "model.pt"), str(folder)]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 3          # each good image once, classified as on its own
    for line in lines:
        file, label = line.split("\t")[:2]
        assert whole[str(images / Path(file).name)] == label
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "img01b.png" in err[0] and "not a readable image" in err[0], err


def test_the_library_call_still_raises_without_on_unreadable(shipped, tmp_path):
    selected, images, _ = shipped
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(UserError, match="bad.png"):
        predict(selected / "model.pt", [images, bad])
    seen = []
    out = predict(selected / "model.pt", [images, bad], batch_size=5,
                  on_unreadable=lambda f, reason: seen.append(f))
    assert len(out) == 12 and seen == [bad]


def test_no_readable_image_among_several_is_exit_2(shipped, tmp_path, capsys):
    selected, _, _ = shipped
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"junk")
    assert main(["predict", str(selected / "model.pt"), str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none of the 2 images is readable" in err[0], err
