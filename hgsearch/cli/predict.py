"""``hgsearch predict``: classify image files with an exported model."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``predict`` to the ``hgsearch`` command."""
    p = subparsers.add_parser("predict", help="classify image files with a model.pt or "
                              "model.onnx", description="Print the predicted class of each "
                              "image, preprocessed exactly as in training.")
    p.add_argument("model", metavar="MODEL", help="model.pt or model.onnx (e.g. "
                   "RESULTS/selected/model.onnx)")
    p.add_argument("images", metavar="IMAGES", nargs="+", help="image files or folders of them")
    p.set_defaults(func=predict_command)


def predict_command(args: argparse.Namespace) -> int:
    """One line per image: file, predicted class, its probability (tab-separated)."""
    from hgsearch.predict import predict  # numpy, and torch or onnxruntime, load only here

    for p in predict(args.model, args.images):
        print(f"{p.file}\t{p.label}\t{p.probability:.4f}")
    return 0
