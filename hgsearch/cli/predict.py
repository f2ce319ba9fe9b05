"""``hgsearch predict``: classify image files with an exported model."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``predict`` to the ``hgsearch`` command."""
    p = subparsers.add_parser("predict", help="classify image files with a model.pt or "
                              "model.onnx", description="Print the predicted class of each "
                              "image, preprocessed exactly as in training. An image that cannot "
                              "be read is named on stderr and skipped; the exit status is then "
                              "1 (0 when every image was classified, 2 when none was).")
    p.add_argument("model", metavar="MODEL", help="model.pt or model.onnx (e.g. "
                   "RESULTS/selected/model.onnx)")
    p.add_argument("images", metavar="IMAGES", nargs="+", help="image files or folders of them")
    p.set_defaults(func=predict_command)


def predict_command(args: argparse.Namespace) -> int:
    """One line per image: file, predicted class, its probability (tab-separated); one line on
    stderr per unreadable image. Exit 0: all classified; 1: some skipped; 2: none readable."""
    from hgsearch.errors import UserError
    from hgsearch.predict import predict  # numpy, and torch or onnxruntime, load only here

    skipped: list[str] = []
    predictions = predict(args.model, args.images,
                          on_unreadable=lambda _file, reason: skipped.append(reason))
    if not predictions:
        # Nothing to print but why: the one unreadable image's reason, or how many there were.
        raise UserError(skipped[0] if len(skipped) == 1 else
                        f"none of the {len(skipped)} images is readable ({skipped[0]})")
    for p in predictions:
        print(f"{p.file}\t{p.label}\t{p.probability:.4f}")
    for reason in skipped:
        print(f"hgsearch: warning: skipped {reason}", file=sys.stderr)
    return 1 if skipped else 0
