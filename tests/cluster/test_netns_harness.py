"""cluster/netns_cluster.sh on its own, without Ray: what a failed start leaves, what a host sees.

The harness's cluster is tested in tests/cluster/test_multinode.py; these need only root and
iproute2.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.cluster.netns import NetnsCluster, unavailable

pytestmark = pytest.mark.multinode


def test_a_failed_start_tears_down_what_it_made(tmp_path):
    reason = unavailable()
    if reason:
        pytest.skip(f"no namespace cluster here: {reason}")
    c = NetnsCluster(tmp_path / "bad")
    with pytest.raises(RuntimeError, match="up failed; tearing down"):
        with pytest.MonkeyPatch.context() as mp:
            # The bridge's and the head's namespaces and a cable are made before the first
            # address, which is refused.
            mp.setenv("SUBNET", "198.18.300")
            c.up(tries=1)
    assert (c.state / "cluster.env").exists()      # it got that far: it had an id
    assert c.leftovers() == []


def test_code_under_tmp_stays_visible_and_read_only_on_a_host(tmp_path):
    """A clone under /tmp (CI's may be): a host still sees the code, read-only, and no other
    way in to it; its own /tmp is its disk; the cluster's folder is hidden. No Ray needed."""
    reason = unavailable()
    if reason:
        pytest.skip(f"no namespace cluster here: {reason}")
    state, repo = tmp_path / "state", tmp_path / "clone"
    (repo / ".venv").mkdir(parents=True)
    (repo / ".venv" / "marker").write_text("code\n")
    (state / "disk" / "w1").mkdir(parents=True)
    ident = f"t{os.getpid() % 100000:05d}"
    (state / "cluster.env").write_text(
        f"ID={ident}\nREPO={repo}\nPYTHON=/bin/false\nPYPREFIX={repo / '.venv'}\n"
        'NODES="w1"\nADDR_w1=198.18.0.11\nSTORE_URL=http://198.18.0.3:9000\n')
    c = NetnsCluster(state)
    c.env = {"ID": ident, "NODES": "w1"}
    subprocess.run(["ip", "netns", "add", c.ns("w1")], check=True)
    try:
        done = c.run("w1", "bash", "-c",
                     f"cat {repo}/.venv/marker; touch {repo}/x {repo}/.venv/x 2>/dev/null || "
                     f"echo read-only; ls -A /tmp/.code{repo} | wc -l; touch /tmp/work/mine && "
                     f"echo writable; test -e {state}/cluster.env || echo hidden; hostname")
        assert done.stdout.split() == ["code", "read-only", "0", "writable", "hidden",
                                       "hgs-w1"], done.stdout
        assert (state / "disk" / "w1" / "work" / "mine").is_file()
        assert not (repo / "x").exists()
    finally:
        subprocess.run(["ip", "netns", "del", c.ns("w1")], check=True)
    assert c.leftovers() == []


def test_where_it_cannot_run_it_says_why(monkeypatch):
    """The reason the group's fixture skips with (or fails with, in CI)."""
    import shutil

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert unavailable() == "network namespaces and mounts need root"
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "ip" else f"/usr/bin/{tool}")
    assert unavailable() == "`ip` is missing (iproute2 / util-linux)"
