"""Files hgsearch reads with torch.load run no code: a hostile pickle is refused at every site.

Each entry point that reads a torch file gets one whose unpickling would create a marker file
(``builtins.exec``, as any payload would run a shell), in torch.save's zip format and as a bare
pickle (torch.load's legacy path unpickles its first record before checking anything). The load
must be refused (an exception, or the cache's "unreadable: recompute") and the marker must not
exist. ``test_every_torch_load_site_is_exercised_here`` reads hgsearch's source, so a new
torch.load call fails until it is added below; a static check that each passes
``weights_only=True`` comes with it.
"""

from __future__ import annotations

import ast
import contextlib
import io
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

from hgsearch.analysis.export import feeding
from hgsearch.checkpoint import FileCheckpointer, read_state
from hgsearch.dense_store import DenseStore
from hgsearch.errors import UserError
from hgsearch.models import build_model, load_model, read_model_file
from hgsearch.models.weights import read_state_dict, read_weights
from hgsearch.predict import read_model_pt
from hgsearch.score_cache import ScoreCache, score_key

PACKAGE = Path(__file__).resolve().parents[1] / "hgsearch"


class _Runs:
    """Unpickled, it runs ``code``: what a hostile file does (``exec`` standing for any call)."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def hostile_bytes(marker: Path, fmt: str) -> bytes:
    """A payload shaped like every file read here (a dict of the keys each reader looks at),
    one value of which creates ``marker`` when unpickled."""
    payload = {"format": "hgsearch-model-v2", "arch": "resnet20", "num_classes": 10,
               "widths": [16] * 9, "state_dict": {}, "extra": {}, "epoch": 1,
               "status": "trained", "scores": [], "generator": torch.Generator().get_state(),
               "x": _Runs(f"open({str(marker)!r}, 'w').close()")}
    if fmt == "pickle":
        return pickle.dumps(payload, protocol=2)   # torch.save's own protocol
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def _file(tmp: Path, data: bytes, name: str = "hostile.pt") -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _store_entry(tmp: Path, data: bytes) -> object:
    store = DenseStore(tmp / "dense")
    _file(tmp / "dense" / "k", b"", "meta.json").write_text(
        '{"status": "trained", "epoch": 1, "seconds_train": 0.0}')
    _file(tmp / "dense" / "k", data, "state.pt")
    return store.entry("k")


class _Fixed:
    """A criterion that scores without looking: what ScoreCache returns when it scored."""

    name = "fixed"

    def __call__(self, model, x, y, *, batch_size, generator):
        return [torch.ones(w, dtype=torch.float64) for w in model.widths]


def _score_cache(tmp: Path, data: bytes) -> object:
    """A cached score of this very call, hostile: it must be scored afresh, not loaded."""
    model, x, y = build_model("resnet20", 10), torch.zeros(2, 3, 8, 8), torch.zeros(2).long()
    store = DenseStore(tmp / "dense", poll_s=0.01)
    key = score_key("fixed", model, x, y, batch_size=2, generator=torch.Generator())
    _file(tmp / "dense" / "k" / "scores" / key, data, "scores.pt")
    cache = ScoreCache(_Fixed(), store, "k")
    scores = cache(model, x, y, batch_size=2, generator=torch.Generator())
    assert cache.calls == 1 and not cache.reused
    return scores


def _predict_second_read(tmp: Path, data: bytes, monkeypatch) -> object:
    # read_model_pt reads the file twice: load_model (its own case), then the preprocessing.
    # The second read is guarded on its own, as if the file changed in between.
    monkeypatch.setattr("hgsearch.models.load_model", lambda path: build_model("resnet20", 10))
    return read_model_pt(_file(tmp, data))


# (module, function) holding a torch.load -> the entry points that reach it, each with what a
# refusal is: the exception it raises, or None where the reader's refusal is a return value
# (the caches: an unreadable entry is trained or scored again).
SITES: dict[tuple[str, str], dict[str, tuple[Callable, type[BaseException] | None]]] = {
    ("checkpoint.py", "read_state"): {
        "read_state": (lambda t, d, m: read_state(_file(t, d)), pickle.UnpicklingError),
        "FileCheckpointer.load": (lambda t, d, m: FileCheckpointer(_file(t, d)).load(),
                                  pickle.UnpicklingError),
    },
    ("models/__init__.py", "read_model_file"): {
        "read_model_file": (lambda t, d, m: read_model_file(_file(t, d)), UserError),
        "load_model": (lambda t, d, m: load_model(_file(t, d)), UserError),
        "predict.read_model_pt": (lambda t, d, m: read_model_pt(_file(t, d)), UserError),
    },
    ("models/weights.py", "read_state_dict"): {
        "read_state_dict": (lambda t, d, m: read_state_dict(_file(t, d)), UserError),
        "read_weights": (lambda t, d, m: read_weights(_file(t, d), "resnet20"), UserError),
    },
    ("dense_store.py", "DenseStore.entry"): {
        "DenseStore.entry": (lambda t, d, m: _store_entry(t, d), None),
    },
    ("score_cache.py", "ScoreCache._load"): {
        "ScoreCache.__call__": (lambda t, d, m: _score_cache(t, d), None),
    },
    ("predict.py", "read_model_pt"): {
        "read_model_pt (preprocessing)": (_predict_second_read, pickle.UnpicklingError),
    },
    ("analysis/export.py", "feeding"): {
        "export.feeding": (lambda t, d, m: feeding(_file(t, d), build_model("resnet20", 10),
                                                   pd.Series({"dataset": "cifar10"})),
                           pickle.UnpicklingError),
    },
}
CASES = [(site, name) for site, entries in SITES.items() for name in entries]


@pytest.mark.parametrize("fmt", ["zip", "pickle"])
@pytest.mark.parametrize("site,entry", CASES, ids=[name for _, name in CASES])
def test_a_hostile_pickle_is_refused_and_runs_nothing(tmp_path, monkeypatch, site, entry, fmt):
    call, refusal = SITES[site][entry]
    marker = tmp_path / "ran"
    try:
        outcome, raised = call(tmp_path, hostile_bytes(marker, fmt), monkeypatch), None
    except Exception as err:   # judged below, after the marker
        outcome, raised = None, err
    assert not marker.exists(), f"{entry}: the file's code ran"
    if refusal is None:
        assert raised is None and (outcome is None or isinstance(outcome, list)), raised
    else:
        assert isinstance(raised, refusal), f"{entry}: {raised!r}"
    if isinstance(raised, UserError):
        assert "\n" not in str(raised) and str(tmp_path) in str(raised)


@pytest.mark.parametrize("fmt", ["zip", "pickle"])
def test_the_payload_does_run_code_when_torch_is_allowed_to(tmp_path, fmt):
    """The control: without weights_only the same file creates the marker, so the test above
    measures the guard and not a broken payload."""
    marker = tmp_path / "ran"
    # the legacy path then finds no magic number in what it unpickled: too late
    with pytest.raises(RuntimeError) if fmt == "pickle" else contextlib.nullcontext():
        torch.load(io.BytesIO(hostile_bytes(marker, fmt)), weights_only=False)
    assert marker.exists()


def _torch_load_calls() -> dict[tuple[str, str], list[ast.Call]]:
    """Every torch.load call in hgsearch, by (module, enclosing function's qualified name)."""
    found: dict[tuple[str, str], list[ast.Call]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(PACKAGE).as_posix()
        torch_names = {"torch"}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                torch_names |= {a.asname for a in node.names if a.name == "torch" and a.asname}
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("torch"):
                loads = [a.name for a in node.names if a.name in ("load", "serialization")]
                assert not loads, f"{rel}:{node.lineno}: import torch and call torch.load"
        for scope, call in _calls(tree, []):
            func = call.func
            if isinstance(func, ast.Attribute) and func.attr == "load" and (
                    ast.unparse(func.value) in torch_names):
                found.setdefault((rel, ".".join(scope)), []).append(call)
    return found


def _calls(node: ast.AST, scope: list[str]) -> Iterator[tuple[list[str], ast.Call]]:
    """(enclosing class and function names, call) of every call under ``node``."""
    for child in ast.iter_child_nodes(node):
        inner = scope
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            inner = [*scope, child.name]
        if isinstance(child, ast.Call):
            yield scope, child
        yield from _calls(child, inner)


def test_every_torch_load_site_is_exercised_here():
    calls = _torch_load_calls()
    assert set(calls) == set(SITES), (
        "torch.load sites not in SITES (add an entry point that reaches each): "
        f"{sorted(set(calls) - set(SITES))}; gone: {sorted(set(SITES) - set(calls))}")
    assert all(len(c) == 1 for c in calls.values()), {k: len(c) for k, c in calls.items()}


def test_every_torch_load_passes_weights_only_true():
    for (rel, func), calls in _torch_load_calls().items():
        for call in calls:
            given = {k.arg: k.value for k in call.keywords}
            assert isinstance(given.get("weights_only"), ast.Constant) and (
                given["weights_only"].value is True), f"{rel}:{call.lineno} ({func})"


# Not a torch.load: CIFAR's official files are python pickles, read by torchvision's readers
# with pickle.load. A data_dir from elsewhere (a shared /data, a mirror) is as untrusted as a
# weights file: data/cifar.py unpickles each file with numpy's array globals only, first.
def test_a_hostile_cifar_pickle_is_refused_and_runs_nothing(tmp_path):
    from hgsearch.data.cifar import load_cifar
    from tests.data_fixtures import write_cifar

    write_cifar(tmp_path)
    marker = tmp_path / "ran"
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(pickle.dumps({"data": _Runs(f"open({str(marker)!r}, 'w').close()"),
                                    "labels": []}, protocol=2))
    with pytest.raises(UserError) as refused:
        load_cifar(tmp_path, variant="cifar10")
    assert not marker.exists(), "the file's code ran"
    # protocol 2 writes builtins under its Python 2 name
    assert str(refused.value) == (f"{batch}: refused, not unpickled: it names __builtin__.exec,"
                                  " and a CIFAR pickle holds only data and numpy arrays")
