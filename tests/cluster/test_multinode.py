"""Sweeps on a cluster of separate hosts: own addresses, own disks, a node lost, strangers refused.

One cluster for the module (cluster/netns_cluster.sh, as root): a head with no CPU for trials,
two workers with one CPU each, an S3 store and a client, each in its own network namespace with
its own disk. Checkpoints go to the store (s3://hgsearch/ckpt), which every host reaches over
the network; the results folder is on the head's disk only. The tests run in file order: the
node-loss sweep kills a worker, and the last test takes the cluster down and looks for leftovers.
tests/cluster/test_netns_harness.py tests the harness on its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from hgsearch.results import load_curves, load_results
from tests.cluster.netns import EPOCHS, NetnsCluster, cluster_up, unavailable, write_space

pytestmark = pytest.mark.multinode

STORAGE = "s3://hgsearch/ckpt"
RESULTS = "/tmp/results"       # on the head's disk
SWEEP_S = 420


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = unavailable()
    if reason:
        if os.environ.get("CI") == "true":     # CI runs as root: a skip there would hide a bug
            pytest.fail(f"multi-node tests cannot run in CI: {reason}")
        pytest.skip(f"no namespace cluster here: {reason}")
    c = NetnsCluster(tmp_path_factory.mktemp("netns"), workers=2)
    yield from cluster_up(c)


def _space(c: NetnsCluster, name: str, **keys) -> str:
    return write_space(c.disk("head") / "work", name, **keys)     # relative to where the job starts


def _on(c: NetnsCluster, node: str, script: str, *args: str) -> str:
    """Run a Python snippet on a host; its output (Ray's warnings included)."""
    done = c.run(node, "python", "-c", script, *args, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    return done.stdout


def _said(out: str, *tags: str) -> list[str]:
    """The words of the last output line that starts with one of ``tags``."""
    lines = [line.split() for line in out.splitlines() if line.startswith(tags)]
    assert lines, out[-3000:]
    return lines[-1]


def _s3_keys(c: NetnsCluster, prefix: str) -> list[str]:
    out = _on(c, "client", "import sys, boto3\n"
              "pages = boto3.client('s3').get_paginator('list_objects_v2')\n"
              "for page in pages.paginate(Bucket='hgsearch', Prefix=sys.argv[1]):\n"
              "    print('\\n'.join(o['Key'] for o in page.get('Contents', [])))", prefix)
    return [line for line in out.splitlines() if line.strip()]


# --------------------------------------------------------------------------- the hosts

def test_each_host_has_its_own_address_and_no_way_out(cluster):
    c = cluster
    root = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    prefix = c.addr("head").rsplit(".", 1)[0] + "."
    assert prefix not in root                 # this namespace holds none of their addresses
    root_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert not any(f" v-{node}@" in root_links for node in c.nodes())
    # The bridge's namespace: the bridge and the hosts' cables, no address, no route.
    net = f"hgs-{c.id}-net"
    links = subprocess.run(["ip", "-n", net, "-o", "link"], capture_output=True, text=True,
                           check=True).stdout
    assert sorted(line.split(":")[1].strip().split("@")[0] for line in links.splitlines()) == \
        sorted(["lo", "br0", *(f"v-{node}" for node in c.nodes())])
    addrs = subprocess.run(["ip", "-n", net, "-o", "addr"], capture_output=True, text=True,
                           check=True).stdout
    assert [line.split()[3] for line in addrs.splitlines()] == ["127.0.0.1/8"]
    assert subprocess.run(["ip", "-n", net, "route"], capture_output=True, text=True,
                          check=True).stdout.strip() == ""
    for node in c.nodes():
        links = subprocess.run(["ip", "-n", c.ns(node), "-o", "link"], capture_output=True,
                               text=True, check=True).stdout
        assert sorted(line.split(":")[1].strip().split("@")[0]
                      for line in links.splitlines()) == ["eth0", "lo"]
        addrs = subprocess.run(["ip", "-n", c.ns(node), "-o", "addr"], capture_output=True,
                               text=True, check=True).stdout
        inet = sorted(line.split()[3] for line in addrs.splitlines())
        assert inet == sorted(["127.0.0.1/8", f"{c.addr(node)}/24"])     # and no IPv6
        routes = subprocess.run(["ip", "-n", c.ns(node), "route"], capture_output=True,
                                text=True, check=True).stdout.splitlines()
        assert len(routes) == 1 and routes[0].startswith(prefix + "0/24 dev eth0")
        for target in ("1.1.1.1", "10.0.0.1", "192.168.1.1"):   # route look-ups: nothing sent
            look = subprocess.run(["ip", "-n", c.ns(node), "route", "get", target],
                                  capture_output=True, text=True)
            assert look.returncode != 0 and "unreachable" in look.stderr


def test_each_host_has_its_own_disk_and_read_only_code(cluster):
    c = cluster
    (c.disk("head") / "only-on-head").write_text("head")
    script = ("import os, socket, sys\n"
              "print(socket.gethostname(), os.getcwd(), os.path.exists('/tmp/only-on-head'),"
              " os.path.exists(sys.argv[1]), os.access(sys.argv[2], os.W_OK))")
    seen = {node: _on(c, node, script, str(c.state / "disk"), str(Path(__file__).parent)).split()
            for node in ("head", "w1", "w2")}
    assert seen["head"] == ["hgs-head", "/tmp/work", "True", "False", "False"]
    for node in ("w1", "w2"):
        assert seen[node] == [f"hgs-{node}", "/tmp/work", "False", "False", "False"]


# --------------------------------------------------------------------------- sweeps

@pytest.fixture(scope="module")
def sweep_a(cluster):
    """`hgsearch sweep --address` from the head: one trial per worker (the head has no CPU).
    It keeps its checkpoints (by default a trial's go once its row is written: sweep c)."""
    c = cluster
    space = _space(c, "a", keep_checkpoints=True)
    done = c.run("head", "hgsearch", "sweep", space, "--address", c.gcs, "--name", "a",
                 "--results", RESULTS, "--storage", STORAGE, timeout=SWEEP_S)
    return done


def test_sweep_rows_models_and_curves_from_both_workers_reach_the_head(cluster, sweep_a):
    c = cluster
    assert sweep_a.returncode == 0, sweep_a.stdout[-4000:]
    folder = c.disk("head") / "results" / "a"
    rows = load_results(folder).set_index("trial_id")
    assert sorted(rows.index) == ["t0000", "t0001"] and (rows.status == "ok").all()
    workers = {c.addr("w1"): "w1", c.addr("w2"): "w2"}
    assert sorted(rows.node_ip) == sorted(workers)           # one trial on each worker
    assert sorted(rows.hostname) == ["hgs-w1", "hgs-w2"]
    curves = load_curves(folder)
    for trial_id, row in rows.iterrows():
        node = workers[row.node_ip]
        for name in (f"models/{trial_id}.pt", f"curves/{trial_id}.parquet"):
            # The head's copy is the one the worker wrote on its own disk, sent over.
            there = c.disk(node) / "results" / "a" / name
            assert (folder / name).read_bytes() == there.read_bytes()
        assert (folder / "logs" / f"{trial_id}.log").stat().st_size > 0
        curve = curves[curves.trial_id == trial_id]
        assert list(curve[curve.phase == "train"].epoch) == list(range(1, EPOCHS + 1))


def test_no_worker_sees_the_heads_results_folder(cluster, sweep_a):
    c = cluster
    assert (c.disk("head") / "results" / "a" / "sweep.json").is_file()
    rows = load_results(c.disk("head") / "results" / "a")
    for node in ("w1", "w2"):
        mine = sorted(rows.trial_id[rows.hostname == f"hgs-{node}"])
        local = c.disk(node) / "results" / "a"
        # A worker's folder of that name is its own: its own trial's files, no sweep records.
        assert sorted(p.stem for p in (local / "trials").iterdir()) == mine
        assert not (local / "sweep.json").exists() and not (local / "optuna.db").exists()
        assert _on(c, node, "import os; print(os.path.exists('/tmp/results/a/sweep.json'))"
                   ).split() == ["False"]


def test_checkpoints_live_in_the_object_store(cluster, sweep_a):
    keys = _s3_keys(cluster, "ckpt/a/tune/")
    for trial_id in ("t0000", "t0001"):
        assert any(k.startswith(f"ckpt/a/tune/{trial_id}_") and "/checkpoint_" in k
                   for k in keys), keys[:20]


# --------------------------------------------------------------------------- strangers

GCS_CHECK = """
import sys
from ray._raylet import GcsClient
try:
    nodes = GcsClient(address=sys.argv[1]).get_all_node_info(timeout=10).values()
    print("CONNECTED", *sorted(n.node_manager_address for n in nodes if n.state == 0))  # ALIVE
except Exception as err:
    print("REFUSED", type(err).__name__)
"""

TASK = """
import os, sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR")
where = ray.remote(num_cpus=0, resources={"w1": 0.01})(lambda: os.environ["HGSEARCH_NODE"])
print("RAN ON", ray.get(where.remote(), timeout=60))
"""


OUTCOMES = ("REFUSED", "CONNECTED")


def _alive(c: NetnsCluster) -> int:
    """Nodes alive, as the GCS tells the head (which has the token)."""
    words = _said(_on(c, "head", GCS_CHECK, c.gcs), *OUTCOMES)
    assert words[0] == "CONNECTED", words
    return len(words) - 1


def test_a_client_without_the_token_is_refused_with_it_it_can_submit_work(cluster, sweep_a,
                                                                        tmp_path):
    c = cluster
    client_token = c.disk("client") / "ray-token"
    assert not client_token.exists()
    before = _alive(c)
    # Without a token: joining as a node fails (tried alongside, it takes Ray ~25 s to give up)
    join = c.popen("client", "ray", "start", "--address", c.gcs, "--num-cpus=0",
                   "--disable-usage-stats", log=tmp_path / "join.log")
    try:
        refused = ["REFUSED", "AuthenticationError"]
        assert _said(_on(c, "client", GCS_CHECK, c.gcs), *OUTCOMES) == refused
        wrong = c.run("client", "env", "RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN=" + "0" * 64,
                      "python", "-c", GCS_CHECK, c.gcs)
        assert _said(wrong.stdout, *OUTCOMES) == refused
        assert join.wait(timeout=120) != 0
    finally:
        if join.poll() is None:
            join.kill()
            join.wait()
    assert "Authentication" in (tmp_path / "join.log").read_text()
    assert _alive(c) == before

    # With the token (given to it as to any new host): it lists the nodes, joins, runs a task.
    client_token.write_text((c.state / "token").read_text())
    client_token.chmod(0o600)
    try:
        listed = _said(_on(c, "client", GCS_CHECK, c.gcs), *OUTCOMES)
        assert listed[0] == "CONNECTED" and c.addr("head") in listed[1:]
        node = c.popen("client", "ray", "start", "--block", "--address", c.gcs,
                       "--num-cpus=0", "--disable-usage-stats", log=tmp_path / "node.log")
        deadline = time.monotonic() + 90
        while _alive(c) < before + 1:
            assert node.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "node.log").read_text()[-3000:]
            time.sleep(1)
        assert _said(_on(c, "client", TASK, c.gcs), "RAN ON") == ["RAN", "ON", "w1"]
    finally:
        c.stop("client")
        client_token.unlink()


# --------------------------------------------------------------------------- a node lost

def _kill_first_held(c: NetnsCluster, proc: subprocess.Popen, name: str) -> dict:
    """Wait for a trial held on a worker, kill that worker, release the trials elsewhere."""
    workers = ("w1", "w2")
    deadline = time.monotonic() + SWEEP_S
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            held = [(m, n) for n in workers
                    for m in sorted((c.disk(n) / "results" / name).glob("at-*"))]
            if held:
                marker, node = held[0]
                time.sleep(3)        # let the driver register the checkpoint just reported
                c.kill(node)
                return {"trial_id": marker.name[3:], "node": node}
            time.sleep(0.3)
        return {}
    finally:
        for n in workers:
            folder = c.disk(n) / "results" / name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "go").touch()


@pytest.fixture(scope="module")
def sweep_c(cluster, sweep_a, tmp_path_factory):
    """Three trials, retries 1: t0000 and t0001 hold after their first checkpoint, one per
    worker; the worker of the first seen holding is killed, the other released; t0002, which
    raises after its first checkpoint, then runs (twice) on the survivor, as does the retry."""
    c = cluster
    space = _space(c, "c", num_samples=3, retries=1)
    log = tmp_path_factory.mktemp("sweep_c") / "driver.log"
    proc = c.popen("head", "env", f"GCS={c.gcs}", "python", "-m", "tests.cluster.netns_trials",
                   space, "c", "tests.cluster.netns_trials:node_loss_run_trial", STORAGE, log=log)
    try:
        killed = _kill_first_held(c, proc, "c")
        rc = proc.wait(timeout=SWEEP_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return rc, killed, log.read_text()


def test_trial_on_a_killed_worker_resumes_on_the_other_from_its_checkpoint(cluster, sweep_c):
    c = cluster
    rc, killed, log = sweep_c
    assert killed, f"no trial was seen holding on a worker:\n{log[-4000:]}"
    assert rc == 0, log[-4000:]
    survivor = "w2" if killed["node"] == "w1" else "w1"
    assert c.pids(killed["node"]) == []                 # the host is dead, not just idle
    rows = load_results(c.disk("head") / "results" / "c").set_index("trial_id")
    held = rows.loc[["t0000", "t0001"]]            # both held trials end with an ok row
    assert (held.status == "ok").all()
    row = rows.loc[killed["trial_id"]]
    assert row.restarts >= 1 and row.hostname == f"hgs-{survivor}"
    assert (held.drop(index=killed["trial_id"]).restarts == 0).all()
    # The retry started on the survivor from the state saved after epoch 1, not from scratch,
    # reading it from the store (the killed host's disk is out of its reach) ...
    attempt = c.disk(survivor) / "results" / "c" / f"attempt-{killed['trial_id']}-1.json"
    assert json.loads(attempt.read_text()) | {"node_id": None} == \
        {"node": survivor, "node_id": None, "phase": "train", "epoch": 1}
    # ... so its curve holds each epoch once (a restart from scratch would repeat epoch 1).
    curves = load_curves(c.disk("head") / "results" / "c")
    curve = curves[curves.trial_id == killed["trial_id"]]
    assert list(curve[curve.phase == "train"].epoch) == list(range(1, EPOCHS + 1))
    assert list(curve[curve.phase == "finetune"].epoch) == [1]
    assert "crashed" in log and "retrying" in log


def test_failing_trial_fails_on_its_worker_each_attempt(cluster, sweep_c):
    c = cluster
    _, killed, log = sweep_c
    survivor = "w2" if killed["node"] == "w1" else "w1"
    assert "PlantedFailure" in log and "t0002 failed" in log, log[-4000:]
    local = c.disk(survivor) / "results" / "c"
    for restarts in (0, 1):                       # retries: 1, so two attempts, both there
        attempt = json.loads((local / f"attempt-t0002-{restarts}.json").read_text())
        assert attempt["node"] == survivor
    row = load_results(local).set_index("trial_id").loc["t0002"]
    assert row.status == "failed" and "planted failure" in row.error


def test_failing_trial_leaves_a_failed_row_on_the_head(cluster, sweep_c):
    rows = load_results(cluster.disk("head") / "results" / "c").set_index("trial_id")
    assert sorted(rows.index) == ["t0000", "t0001", "t0002"]      # the sweep's every row
    row = rows.loc["t0002"]
    assert row.status == "failed" and "planted failure" in row.error


def test_finished_trials_checkpoints_are_gone_from_the_store(cluster, sweep_c):
    keys = _s3_keys(cluster, "ckpt/c/tune/")
    assert any(k.endswith(".json") for k in keys), keys[:20]        # the sweep's state is there
    for trial_id in ("t0000", "t0001"):                              # rows written: ok
        assert not [k for k in keys if k.startswith(f"ckpt/c/tune/{trial_id}_")
                    and "/checkpoint_" in k], keys


# --------------------------------------------------------------------------- teardown

def test_teardown_leaves_no_namespace_mount_or_process(cluster):
    c = cluster
    assert c.leftovers()                 # it is up: the check sees what it looks for
    seen = [pid for node in c.nodes() for pid in c.pids(node)]
    assert seen
    c.down()
    assert c.leftovers() == []
    assert [pid for pid in seen if _alive_pid(pid)] == []


def _alive_pid(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has ended; init reaps it in its own time)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
