"""cluster/slurm_sweep.sbatch submitted to a real Slurm cluster on the namespace hosts.

One cluster for the module (cluster/netns_cluster.sh with SLURM=1 and no Ray of its own, as
root): slurmctld on the head, slurmd on the workers w1 and w2 (one CPU each), munged on each
with the key the head made, a home the three share (as NFS would). The tests submit the shipped
script from the head as a user would, with a tiny CPU space, and look at what it leaves: rows,
models and curves in the shared results folder, no Ray process or Slurm step once the job ends,
a sweep cancelled mid-way finished by `RESUME=1`, and, when the cluster is taken down, no
namespace, mount or process of it. They run in file order.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path

import pytest

from hgsearch.results import load_curves, load_results
from tests.cluster.netns import (
    EPOCHS,
    NetnsCluster,
    cluster_up,
    slurm_unavailable,
    unavailable,
    write_space,
)

pytestmark = pytest.mark.multinode

JOB_S = 420
# A CPU cluster's user overrides the script's GPUs and CPUs on sbatch's command line.
SBATCH = ("sbatch", "--parsable", "--gpus-per-node=0", "--cpus-per-task=1")
# What a Slurm host runs between jobs: its daemons (slurmscriptd is slurmctld's helper).
DAEMONS = {"head": {"munged", "slurmctld", "slurmscriptd"}, "w1": {"munged", "slurmd"},
           "w2": {"munged", "slurmd"}}
ENDED = ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
         "PREEMPTED", "BOOT_FAIL", "DEADLINE")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = unavailable() or slurm_unavailable()
    if reason:
        if os.environ.get("CI") == "true":     # CI installs Slurm: a skip there would hide a bug
            pytest.fail(f"Slurm tests cannot run in CI: {reason}")
        pytest.skip(f"no Slurm cluster here: {reason}")
    c = NetnsCluster(tmp_path_factory.mktemp("slurm"), workers=2, ray=False, slurm=True)
    yield from cluster_up(c)


def _space(c: NetnsCluster, name: str, **keys) -> str:
    return write_space(c.home(), name, **keys)     # relative to where the job starts


def _head(c: NetnsCluster, command: str, timeout: float = 60) -> str:
    """A shell command on the head, from the shared home; its output."""
    done = c.run("head", "bash", "-c", f"cd && {command}", timeout=timeout)
    assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}"
    return done.stdout


def _submit(c: NetnsCluster, *args: str, env: str = "") -> str:
    """sbatch the shipped script from the head; the job's id."""
    script = c.env["REPO"] + "/cluster/slurm_sweep.sbatch"
    out = _head(c, f"{env} HGSEARCH_VENV={c.env['PYPREFIX']} {' '.join(SBATCH)} {script} "
                   + " ".join(args))
    return out.split()[-1].split(";")[0]


def _job(c: NetnsCluster, job: str) -> dict[str, str]:
    """The controller's record of the job (`scontrol show job`): key -> value."""
    out = _head(c, f"scontrol show job -o {job}")
    return dict(re.findall(r"(\w+)=(\S*)", out))


def _wait(c: NetnsCluster, job: str, timeout: float = JOB_S) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while (record := _job(c, job))["JobState"] not in ENDED:
        assert time.monotonic() < deadline, f"job {job} not done after {timeout} s: {record}"
        time.sleep(2)
    return record


def _output(c: NetnsCluster, job: str) -> str:
    return (c.home() / f"hgsearch-{job}.out").read_text()


def _running(c: NetnsCluster, node: str) -> dict[int, str]:
    """The processes of a host (pid -> name), seen from outside."""
    names = {}
    for pid in c.pids(node):
        try:
            names[pid] = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue                 # ended meanwhile
    return names


def _settled(c: NetnsCluster, timeout: float = 60) -> dict[str, dict[int, str]]:
    """Each Slurm host's processes once only its daemons run (or what runs after timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = {node: _running(c, node) for node in DAEMONS}
        if all(set(seen[node].values()) <= DAEMONS[node] for node in DAEMONS) \
                or time.monotonic() > deadline:
            return seen
        time.sleep(1)


def _nothing_of_the_job_left(c: NetnsCluster, job: str) -> None:
    assert _head(c, "squeue -h -s") == ""                  # no step of any job
    assert _head(c, "squeue -h") == ""
    seen = _settled(c)
    for node, names in seen.items():        # no Ray, no slurmstepd: the daemons only
        assert set(names.values()) <= DAEMONS[node], (node, names)
    assert not (c.home() / ".ray" / f"hgsearch-{job}.token").exists()


# --------------------------------------------------------------------------- the cluster

def test_slurm_runs_a_step_on_each_worker_with_the_heads_munge_key(cluster):
    c = cluster
    nodes = _head(c, "sinfo -h -N -o '%N %t %c'").splitlines()
    assert [line.split() for line in nodes] == [["hgs-w1", "idle", "1"], ["hgs-w2", "idle", "1"]]
    out = _head(c, "srun --nodes=2 --ntasks-per-node=1 bash -c "
                   "'echo $(hostname) $(hostname --ip-address) $HOME "
                   "$(md5sum < /etc/munge/munge.key) $(stat -c %U:%a /etc/munge/munge.key)'")
    key = (c.disk("head") / "etc" / "munge" / "munge.key").read_bytes()
    digest = hashlib.md5(key).hexdigest()
    assert sorted(out.splitlines()) == [
        f"hgs-w1 {c.addr('w1')} /home/hgs {digest} - munge:400",
        f"hgs-w2 {c.addr('w2')} /home/hgs {digest} - munge:400"]
    for node in DAEMONS:       # each host has its own copy, on its own disk, and its own munged
        assert (c.disk(node) / "etc" / "munge" / "munge.key").read_bytes() == key
        assert (c.disk(node) / "munge" / "run" / "munge.socket.2").is_socket()
        assert set(_running(c, node).values()) == DAEMONS[node]


# --------------------------------------------------------------------------- sweeps

@pytest.fixture(scope="module")
def sweep_job(cluster):
    c = cluster
    job = _submit(c, _space(c, "tiny"), "s1", "--num-samples", "2")
    return job, _wait(c, job)


def test_sbatch_sweep_runs_trials_on_both_workers_into_the_results_folder(cluster, sweep_job):
    c = cluster
    job, record = sweep_job
    assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0"), _output(c, job)
    assert record["NodeList"] == "hgs-w[1-2]"
    folder = c.home() / "hgsearch-results" / "s1"
    rows = load_results(folder).set_index("trial_id")
    assert sorted(rows.index) == ["t0000", "t0001"] and (rows.status == "ok").all()
    # One trial on each node: the Ray head's (the first node, where the batch script ran) and
    # the worker's that srun started on the second.
    assert sorted(rows.hostname) == ["hgs-w1", "hgs-w2"]
    assert sorted(rows.node_ip) == [c.addr("w1"), c.addr("w2")]
    curves = load_curves(folder)
    for trial_id in rows.index:
        assert (folder / "models" / f"{trial_id}.pt").stat().st_size > 0
        curve = curves[curves.trial_id == trial_id]
        assert list(curve[curve.phase == "train"].epoch) == list(range(1, EPOCHS + 1))
    assert "sweep s1: 2 rows (2 ok)" in _output(c, job)


def test_the_job_ends_with_no_ray_process_or_slurm_step(cluster, sweep_job):
    job, _ = sweep_job
    _nothing_of_the_job_left(cluster, job)


def test_resume_after_scancel_finishes_the_sweep_with_every_row_once(cluster):
    c = cluster
    folder = c.home() / "hgsearch-results" / "s2"
    # A trial cancelled while training its dense network leaves its claim in the shared dense
    # store; resumed on the other node, it waits stale_s (5 min) before taking it over, as
    # designed (dense_store.py): no sharing here, which keeps this test to a few minutes.
    space = _space(c, "tiny2", share_dense=False)
    job = _submit(c, space, "s2", "--num-samples", "4")
    deadline = time.monotonic() + JOB_S
    while not list((folder / "trials").glob("t*.parquet")):     # cancelled once a row is in
        assert time.monotonic() < deadline and _job(c, job)["JobState"] in ("PENDING",
                                                                             "RUNNING"), \
            _output(c, job)[-3000:]
        time.sleep(0.5)
    _head(c, f"scancel {job}")
    record = _wait(c, job, timeout=120)
    assert record["JobState"] == "CANCELLED", record
    before = {p.name: p.read_bytes() for p in (folder / "trials").glob("t*.parquet")}
    assert 1 <= len(before) < 4, sorted(before)                  # mid-sweep
    _nothing_of_the_job_left(c, job)

    again = _submit(c, space, "s2", env="RESUME=1")
    record = _wait(c, again)
    assert (record["JobState"], record["ExitCode"]) == ("COMPLETED", "0:0"), _output(c, again)
    rows = load_results(folder)
    assert sorted(rows.trial_id) == ["t0000", "t0001", "t0002", "t0003"], rows.trial_id
    assert (rows.status == "ok").all()
    # Four configs, not three: the restored sampler draws nothing an orphan drew already.
    assert rows.lam.nunique() == 4, rows[["trial_id", "lam"]]
    for name, data in before.items():            # the rows written before the cancel: kept
        assert (folder / "trials" / name).read_bytes() == data
    curves = load_curves(folder)
    for trial_id in rows.trial_id:               # each trial's epochs once, however it went
        curve = curves[curves.trial_id == trial_id]
        assert list(curve[curve.phase == "train"].epoch) == list(range(1, EPOCHS + 1))
        assert list(curve[curve.phase == "finetune"].epoch) == [1]
    _nothing_of_the_job_left(c, again)


# --------------------------------------------------------------------------- teardown

def test_teardown_leaves_no_namespace_mount_or_daemon(cluster):
    c = cluster
    seen = {pid: name for node in DAEMONS for pid, name in _running(c, node).items()}
    assert {"slurmctld", "slurmd", "munged"} <= set(seen.values())
    assert _mounted_anywhere(c)            # it is up: the check sees what it looks for
    c.down()
    assert c.leftovers() == []
    assert [(pid, name) for pid, name in seen.items() if _alive(pid)] == []
    assert _mounted_anywhere(c) == []


def _mounted_anywhere(c: NetnsCluster) -> list[str]:
    """Mounts of the cluster's folders in any process's mount table (a host's mounts live in
    its processes' own mount namespaces, out of this one's sight)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                table = (entry / "mountinfo").read_text()
            except OSError:
                continue
            found += [f"{entry.name}: {line}" for line in table.splitlines()
                      if str(c.state) in line]
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has ended; init reaps it in its own time)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
