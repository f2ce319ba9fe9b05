"""Sweeps on a real multi-node Ray cluster on this machine, and the cluster/ files.

A head and two worker nodes (one CPU each; ray.cluster_utils.Cluster) run one small sweep. While
its trials run, the worker node of one of them is removed after that trial's first checkpoint:
the trial must be retried on another node, resume from the checkpoint, and the sweep must still
record every trial exactly once. The Cluster is shut down in the fixture's finally; it ends only
the processes it started.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import optuna
import pytest
import ray
import yaml
from optuna.trial import TrialState
from ray.cluster_utils import Cluster

from hgsearch.results import load_curves, load_results
from hgsearch.search.cluster import checkpoints_possible
from hgsearch.search.driver import run_sweep
from hgsearch.search.sink import SINK_NAMESPACE, FileSink, send_files, sink_name
from hgsearch.trial import run_trial

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"

EPOCHS = 3
TINY = {"dataset": "synthetic", "synthetic_train_size": 300, "synthetic_test_size": 50,
        "arch": "resnet20", "epochs": EPOCHS, "checkpoint_every": 1, "batch_size": 50,
        "eval_batch_size": 100, "finetune_epochs": 1, "score_samples": 16,
        "latency_repeats": 1, "latency_batch": 4, "device": "cpu", "prune_ratio": 0.3}
GO = "go"                  # the file that releases trials held at their first checkpoint
HOLD_S = 90                # how long a held trial waits for it before going on regardless


def held_run_trial(config, *, extra=None, log=print, checkpoint=None):
    """run_trial, but a first attempt stops after its first checkpoint, says on which node it
    runs (file ``at-<trial_id>``) and waits for the test's ``go``: so the test can remove that
    node while the trial is known to run there with a checkpoint saved. Each attempt also
    writes what state it started from (``attempt-<trial_id>-<restarts>.json``).
    """
    out = Path(config["out_dir"])
    trial_id, restarts = config["trial_id"], (extra or {}).get("restarts", 0)
    state = checkpoint.load() if checkpoint else None
    (out / f"attempt-{trial_id}-{restarts}.json").write_text(json.dumps(
        {"node_id": extra["node_id"], "phase": state and state["phase"],
         "epoch": state and state["epoch"]}))

    class Held:
        saves = 0

        def load(self):
            return checkpoint.load()

        def save(self, state):
            checkpoint.save(state)
            Held.saves += 1
            if restarts == 0 and Held.saves == 1:
                (out / f"at-{trial_id}").write_text(extra["node_id"])
                deadline = time.monotonic() + HOLD_S
                while not (out / GO).exists() and time.monotonic() < deadline:
                    time.sleep(0.2)

    return run_trial(config, extra=extra, log=log, checkpoint=Held())


def _space(path: Path) -> Path:
    data = {"fixed": TINY, "search": {"lam": {"loguniform": [1.0e-6, 1.0e-4]}},
            "objectives": {"acc_final": "max", "params_ratio": "min"},
            "sampler": {"name": "random", "seed": 0}, "num_samples": 3, "max_concurrent": 3,
            "resources": {"cpu": 1}, "retries": 2, "baseline": False}
    path.write_text(yaml.safe_dump(data))
    return path


def _remove_a_worker_when_held(cluster: Cluster, workers: list, out: Path, done: dict,
                               stop: threading.Event) -> None:
    """Remove the worker node of the first held trial found on one; then release the rest."""
    try:
        by_id = {w.node_id: w for w in workers}
        while not stop.is_set():
            for marker in sorted(out.glob("at-*")):
                node_id = marker.read_text()
                if node_id in by_id:
                    # Let the driver register the checkpoint the trial just reported.
                    time.sleep(3)
                    cluster.remove_node(by_id[node_id])
                    done.update(trial_id=marker.name[3:], node_id=node_id)
                    return
            time.sleep(0.2)
    finally:
        out.mkdir(parents=True, exist_ok=True)
        (out / GO).touch()


@pytest.fixture(scope="module")
def cluster_sweep(tmp_path_factory):
    """A head and 2 workers (1 CPU each), one sweep of 3 trials with a node removed midway.

    About a minute on 2 busy cores, most of it Ray starting three nodes.
    """
    tmp = tmp_path_factory.mktemp("cluster")
    space = _space(tmp / "tiny.yaml")
    out = tmp / "results" / "tiny"
    cluster = None
    stop = threading.Event()
    with pytest.MonkeyPatch.context() as mp:
        # The nodes' workers inherit the environment: let them import held_run_trial.
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO),
                                                             os.environ.get("PYTHONPATH")])))
        try:
            cluster = Cluster(initialize_head=True,
                              head_node_args={"num_cpus": 1, "include_dashboard": False})
            workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
            cluster.wait_for_nodes()
            removed: dict = {}
            killer = threading.Thread(target=_remove_a_worker_when_held,
                                      args=(cluster, workers, out, removed, stop), daemon=True)
            killer.start()
            lines: list[str] = []
            result = run_sweep(space, results=tmp / "results", address=cluster.address,
                               log=lines.append, runner="tests.search.test_cluster:held_run_trial")
            stop.set()
            killer.join(timeout=30)
            yield result, removed, lines, cluster
        finally:
            stop.set()
            ray.shutdown()
            if cluster is not None:
                cluster.shutdown()


@pytest.mark.slow   # tens of seconds: make test-slow (CI runs it)
def test_trials_spread_over_nodes_and_each_is_recorded_once(cluster_sweep):
    result, removed, _, _ = cluster_sweep
    rows = load_results(result.folder)
    assert result.complete
    assert sorted(rows.trial_id) == ["t0000", "t0001", "t0002"]
    assert (rows.status == "ok").all()
    assert rows.node_id.nunique() >= 2           # the trials ran on more than one node
    assert all(rows.device == "cpu") and all(rows.node_ip)
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{result.folder}/optuna.db")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    by_id = rows.set_index("trial_id")
    for trial in study.trials:     # told once, with the values of its row (not a placeholder)
        row = by_id.loc[trial.user_attrs["trial_id"]]
        assert trial.values == [row.acc_final, row.params_ratio]


@pytest.mark.slow   # tens of seconds: make test-slow (CI runs it)
def test_trial_on_a_removed_node_resumes_elsewhere_from_its_checkpoint(cluster_sweep):
    result, removed, lines, _ = cluster_sweep
    assert removed, "no trial was seen holding on a worker node"
    rows = load_results(result.folder).set_index("trial_id")
    row = rows.loc[removed["trial_id"]]
    assert row.restarts >= 1 and row.node_id != removed["node_id"]
    assert (rows.drop(index=removed["trial_id"]).restarts == 0).all()
    # The retry started from the state saved after epoch 1, not from scratch ...
    retry = json.loads((result.folder / f"attempt-{removed['trial_id']}-1.json").read_text())
    assert retry == {"node_id": row.node_id, "phase": "train", "epoch": 1}
    # ... so its curve holds each training epoch once (a restart would have repeated epoch 1).
    curves = load_curves(result.folder)
    curve = curves[curves.trial_id == removed["trial_id"]]
    assert list(curve[curve.phase == "train"].epoch) == list(range(1, EPOCHS + 1))
    assert list(curve[curve.phase == "finetune"].epoch) == [1]
    assert any("crashed" in line and "retrying" in line for line in lines)


@pytest.mark.slow   # tens of seconds: make test-slow (CI runs it)
def test_trial_files_travel_from_a_worker_node_to_the_drivers_folder(cluster_sweep, tmp_path):
    """The sink a sweep starts when nodes do not share its disk: here it writes into another
    folder than the one the worker reads, as the driver's disk would be another machine's."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    result, _, _, cluster = cluster_sweep
    head = cluster.head_node.node_id
    driver_disk = tmp_path / "driver"
    sink = FileSink.options(
        name=sink_name(result.folder), namespace=SINK_NAMESPACE,
        scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False),
    ).remote(str(driver_disk))
    try:
        worker = next(n.node_id for n in cluster.worker_nodes)
        on_worker = ray.remote(num_cpus=0)(_send_from_node).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(worker, soft=False))
        node, sent = ray.get(on_worker.remote(str(result.folder), "t0000"))
        assert node == worker != head
        assert sent == ["models/t0000.pt", "curves/t0000.parquet", "logs/t0000.log"]
        for name in sent:
            assert (driver_disk / name).read_bytes() == (result.folder / name).read_bytes()
        with pytest.raises(ray.exceptions.RayTaskError, match="not a path inside"):
            ray.get(sink.put.remote("../escape", b"x"))
        assert not (tmp_path / "escape").exists()
    finally:
        ray.kill(sink)


def _send_from_node(folder: str, trial_id: str) -> tuple[str, list[str]]:
    return ray.get_runtime_context().get_node_id(), send_files(folder, trial_id)


@pytest.mark.parametrize(("storage", "elsewhere", "expected", "warned"), [
    (None, [], True, False),                        # one machine: the results folder will do
    (None, ["10.0.0.7"], False, True),              # other machines, nothing shared: no checkpoints
    ("s3://bucket/hg", ["10.0.0.7"], True, False),  # named storage: the user's promise
    ("/mnt/nfs/hg", [], True, False),
])
def test_checkpoints_only_where_every_node_reaches_the_storage(storage, elsewhere, expected,
                                                               warned):
    lines: list[str] = []
    assert checkpoints_possible(storage, elsewhere=elsewhere, log=lines.append) is expected
    assert bool(lines) is warned
    assert all("10.0.0.7" in line and "HGSEARCH_STORAGE" in line for line in lines)


# --------------------------------------------------------------------------- cluster/ files

def test_launcher_yaml_is_valid_for_ray_up_and_runs_hgsearch_on_gpu_workers():
    jsonschema = pytest.importorskip("jsonschema")
    text = (CLUSTER / "ray-cluster.yaml").read_text()
    data = yaml.safe_load(text)
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(data, schema)            # what `ray up` checks before anything starts
    types = data["available_node_types"]
    workers = [t for name, t in types.items() if name != data["head_node_type"]]
    assert workers and all(t["resources"].get("GPU", 0) >= 1 for t in workers)
    assert types[data["head_node_type"]]["resources"].get("GPU", 0) == 0
    assert any("pip install" in c and "hgsearch" in c for c in data["setup_commands"])
    assert all("--dashboard-host=127.0.0.1" in c for c in data["head_start_ray_commands"]
               if "ray start" in c)
    assert all("RAY_AUTH_MODE=token" in c for key in ("head_start_ray_commands",
                                                      "worker_start_ray_commands")
               for c in data[key] if "ray start" in c)
    assert "hgsearch sweep" in text and "--address auto" in text     # the documented command


def test_kuberay_rayjob_runs_a_sweep_with_a_gpu_worker_group():
    job = yaml.safe_load((CLUSTER / "rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["entrypoint"].startswith("hgsearch sweep ")
    cluster = spec["rayClusterSpec"]
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    groups = cluster["workerGroupSpecs"]
    assert groups and all({"groupName", "replicas", "rayStartParams", "template"} <= set(g)
                          for g in groups)
    limits = [c["resources"]["limits"] for g in groups
              for c in g["template"]["spec"]["containers"]]
    assert any(int(lim.get("nvidia.com/gpu", 0)) >= 1 for lim in limits)


@pytest.mark.parametrize("script", ["slurm_sweep.sbatch", "local_cluster.sh",
                                    "netns_cluster.sh"])
def test_scripts_parse_in_bash(script):
    path = CLUSTER / script
    assert path.is_file()
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_cluster_files_name_only_existing_cli_flags():
    """The files are kept in step with the CLI: every `hgsearch sweep --flag` they use exists."""
    import argparse
    import re

    from hgsearch.cli import build_parser

    commands = next(a for a in build_parser()._actions
                    if isinstance(a, argparse._SubParsersAction))
    sweep = commands.choices["sweep"]
    known = {s for action in sweep._actions for s in action.option_strings}
    used = set()
    for path in sorted(CLUSTER.iterdir()):
        # A command may continue on the next lines (YAML folding, a backslash).
        text = re.sub(r"\\?\n\s*(#\s*)?(?=--)", " ", path.read_text())
        for command in re.findall(r"hgsearch sweep[^\n]*", text):
            for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", command):
                assert flag in known, f"{path.name}: {flag} in {command!r}"
                used.add(flag)
    assert {"--address", "--name", "--results", "--resume"} <= used
