"""A Ray cluster of separate hosts on this machine, for tests: cluster/netns_cluster.sh from Python.

Each host (head, w1, w2, store, client) is a network namespace with its own address and a disk
of its own (``disk(node)`` from here; ``/tmp`` on the host); with Slurm, the head and the workers
also share a home (``home()``). ``leftovers()`` is measured from
outside: namespaces by name, processes by the inode of their network namespace, mounts in this
namespace's mount table.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "cluster" / "netns_cluster.sh"


def unavailable() -> str | None:
    """Why a namespace cluster cannot be made here, or None if it can."""
    if os.geteuid() != 0:
        return "network namespaces and mounts need root"
    for tool in ("ip", "ss", "unshare", "mount", "mountpoint", "setsid"):
        if shutil.which(tool) is None:
            return f"`{tool}` is missing (iproute2 / util-linux)"
    try:
        import moto.server  # noqa: F401  (the object store the hosts share)
    except ImportError:
        return "moto[server] is missing (pip install -e '.[dev]')"
    probe = f"hgs-probe-{os.getpid()}"
    steps = [["ip", "netns", "add", probe], ["ip", "-n", probe, "link", "add", "br0", "type",
             "bridge"], ["unshare", "--mount", "--uts", "true"]]
    try:
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=30)
            if done.returncode:
                return f"`{' '.join(step)}` failed: {done.stderr.strip()[:200]}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30)
    return None


def slurm_unavailable() -> str | None:
    """Why a Slurm cluster cannot be made on the namespace hosts, or None if it can."""
    missing = [tool for tool in ("slurmctld", "slurmd", "sbatch", "munged", "mungekey")
               if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
               is None]
    if missing:
        return (f"{', '.join(missing)} missing: install Debian's slurm-wlm and munge "
                "(apt-get install slurm-wlm munge)")
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no user `munge` (the munge package makes it)"
    return None


class NetnsCluster:
    """One cluster, recorded in the folder ``state``: Ray on the hosts (``ray``), Slurm on the
    head and the workers (``slurm``), or both."""

    def __init__(self, state: Path, workers: int = 2, ray: bool = True,
                 slurm: bool = False) -> None:
        self.state, self.workers = Path(state), workers
        self.ray, self.slurm = ray, slurm
        self.env: dict[str, str] = {}
        self.netns: dict[str, int] = {}      # namespace name -> inode, for leftovers()

    # ------------------------------------------------------------------ life cycle

    def up(self, timeout: float = 300, tries: int = 2) -> None:
        """Start the cluster; a start that failed (it tears itself down) is tried again: on
        a machine loaded far beyond its cores a raylet can die while it starts."""
        for attempt in range(1, tries + 1):
            try:
                self._script("up", str(self.workers), timeout=timeout)
                break
            except RuntimeError as err:
                if attempt == tries:
                    raise
                kept = self.state.with_name(f"{self.state.name}.failed{attempt}")
                self.state.rename(kept)           # its logs, for a look afterwards
                print(f"netns cluster: start {attempt} failed (logs in {kept}): "
                      f"{str(err).splitlines()[0]}", file=sys.stderr)
        self._load()
        for name in self.namespaces():
            self.netns[name] = os.stat(f"/run/netns/{name}").st_ino

    def _load(self) -> None:
        for line in (self.state / "cluster.env").read_text().splitlines():
            key, _, value = line.partition("=")
            self.env[key] = value.strip('"')

    def down(self) -> None:
        if (self.state / "cluster.env").exists():
            self._script("down", timeout=120)

    def kill(self, node: str) -> None:
        """SIGKILL every process of ``node``: the machine dies, its network stays."""
        self._script("kill", node, timeout=60)

    def stop(self, node: str) -> None:
        self._script("stop", node, timeout=60)

    # ------------------------------------------------------------------ hosts

    @property
    def id(self) -> str:
        return self.env["ID"]

    @property
    def gcs(self) -> str:
        return self.env["GCS"]

    def nodes(self) -> list[str]:
        return self.env["NODES"].split()

    def addr(self, node: str) -> str:
        return self.env[f"ADDR_{node}"]

    def ns(self, node: str) -> str:
        return f"hgs-{self.id}-{node}"

    def disk(self, node: str) -> Path:
        """The host's disk, as this (root) namespace sees it; the host sees it as /tmp."""
        return self.state / "disk" / node

    def home(self) -> Path:
        """The home the Slurm hosts share (their /home/hgs, HOME there), from here."""
        return self.state / "home" / "hgs"

    def namespaces(self) -> list[str]:
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                             check=True).stdout
        names = [line.split()[0] for line in out.splitlines() if line.strip()]
        return [n for n in names if n.startswith(f"hgs-{self.id}-")]

    def pids(self, node: str) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.ns(node)], capture_output=True,
                             text=True).stdout
        return [int(p) for p in out.split()]

    def run(self, node: str, *cmd: str, timeout: float = 120, input: str | None = None,
            ) -> subprocess.CompletedProcess:
        """Run ``cmd`` on ``node`` (its network, its disk) and wait; stdout and stderr merged."""
        return subprocess.run(["bash", str(SCRIPT), "exec", str(self.state), node, *cmd],
                              input=input, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)

    def popen(self, node: str, *cmd: str, log: Path) -> subprocess.Popen:
        """Start ``cmd`` on ``node`` in a session of its own, output to ``log``."""
        with open(log, "w") as out:
            return subprocess.Popen(["bash", str(SCRIPT), "exec", str(self.state), node, *cmd],
                                    stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)

    # ------------------------------------------------------------------ what is left

    def leftovers(self) -> list[str]:
        """Namespaces, processes and mounts of this cluster that still exist."""
        if not self.env and (self.state / "cluster.env").exists():
            self._load()               # a start that failed: what did it leave?
        if not self.env:
            return []
        left = [f"namespace {name}" for name in self.namespaces()]
        inodes = {f"net:[{inode}]" for inode in self.netns.values()}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.readlink(entry / "ns" / "net") in inodes:
                        cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                        left.append(f"process {entry.name} {cmd[:120].decode(errors='replace')}")
                except OSError:
                    continue               # gone meanwhile, or a kernel thread
        marks = (f"hgs-{self.id}-", str(self.state))
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            if any(mark in line for mark in marks):
                left.append(f"mount {line}")
        return left

    def _script(self, command: str, *args: str, timeout: float) -> None:
        # The hosts run this interpreter's Python (and its packages: Ray, moto).
        env = {**os.environ, "PYTHON": sys.executable, "RAY": str(int(self.ray)),
               "SLURM": str(int(self.slurm))}
        done = subprocess.run(["bash", str(SCRIPT), command, str(self.state), *args],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout, env=env)
        if done.returncode:
            raise RuntimeError(f"netns_cluster.sh {command} {' '.join(args)} failed "
                               f"({done.returncode}):\n{done.stdout[-3000:]}")


# The cluster tests' trial: two epochs, the fewest that still resume (or are cancelled) in the
# middle of training, a checkpoint after each.
EPOCHS = 2
TINY = {"dataset": "synthetic", "synthetic_train_size": 100, "synthetic_test_size": 20,
        "arch": "resnet20", "epochs": EPOCHS, "checkpoint_every": 1, "batch_size": 50,
        "eval_batch_size": 100, "finetune_epochs": 1, "score_samples": 8,
        "latency_repeats": 1, "latency_batch": 1, "device": "cpu", "prune_ratio": 0.3}


def write_space(folder: Path, name: str, **keys) -> str:
    """A two-trial random search over lam of TINY as ``folder/NAME.yaml``; its file name."""
    import yaml

    data = {"fixed": TINY, "search": {"lam": {"loguniform": [1.0e-6, 1.0e-4]}},
            "objectives": {"acc_final": "max", "params_ratio": "min"},
            "sampler": {"name": "random", "seed": 0}, "num_samples": 2, "max_concurrent": 2,
            "resources": {"cpu": 1}, "retries": 0, "baseline": False, **keys}
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(data))
    return f"{name}.yaml"


def cluster_up(c: NetnsCluster):
    """Yield ``c`` up; afterwards down, and nothing of it left (a fixture's body)."""
    try:
        c.up()
        yield c
    finally:
        c.down()
        left = c.leftovers()
        assert not left, f"left behind: {left}"
