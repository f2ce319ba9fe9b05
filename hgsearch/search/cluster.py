"""Ray for a sweep: a private local Ray bound to loopback with token auth, or a joined cluster.

Loopback, as measured (tests/search/test_cluster_sockets.py lists the listening sockets of
every process a sweep starts): Ray binds its servers to all interfaces unless
``ray._private.ray_constants.ENABLE_RAY_CLUSTER`` is false, a constant computed from the
environment variable RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER once, when ``ray`` is first imported.
Setting the variable later does nothing in this process, so the constant is set too; the
variable is what the processes Ray starts (raylet, workers, agents) read when they import ray.
Passing ``_node_ip_address="127.0.0.1"`` alone is not enough: the GCS, the raylet and the
workers then still listen on ``::`` (every interface), and the runtime-env agent on the LAN.

Token authentication: Ray 2.60 turns it on by default for ``ray.init()`` and keeps the token
in ``~/.ray/auth_token`` for every cluster of the user. A sweep's own Ray gets its own random
token instead, set with RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (inherited by the processes
Ray starts), so its ports refuse any client without it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any

from hgsearch.errors import UserError

Log = Callable[[str], None]

STORAGE_ENV = "HGSEARCH_STORAGE"   # run_sweep's storage when not given (cluster/ scripts set it)
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
AUTH_MODE_ENV, AUTH_TOKEN_ENV = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"


@contextlib.contextmanager
def ray_session(address: str | None, *, num_cpus: int | None) -> Iterator[bool]:
    """Join ``address``, or start a private local Ray; yields True if we started it.

    Ray is shut down on leaving when we started it; the environment is put back as it was.
    """
    import ray

    quiet = {"include_dashboard": False, "logging_level": logging.WARNING}
    if address:
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, ValueError, RuntimeError) as err:
            raise UserError(f"--address {address}: cannot join a Ray cluster there "
                            f"({err.__class__.__name__}: {str(err).splitlines()[0]})") from None
        yield False
        return
    with local_ray_environment():
        # address="local": never attach to a cluster found through RAY_ADDRESS or `ray start`.
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1,
                 _node_ip_address="127.0.0.1", dashboard_host="127.0.0.1", **quiet)
        try:
            yield True
        finally:
            ray.shutdown()


@contextlib.contextmanager
def local_ray_environment() -> Iterator[dict[str, str]]:
    """Loopback only and a fresh auth token for a Ray this process starts (module docstring)."""
    from ray._private import ray_constants
    from ray._raylet import AuthenticationTokenLoader, Config

    values = {**LOOPBACK_ENV, AUTH_MODE_ENV: "token", AUTH_TOKEN_ENV: secrets.token_hex(32)}
    old_env = {k: os.environ.get(k) for k in values}
    old_flag = ray_constants.ENABLE_RAY_CLUSTER
    os.environ.update(values)
    ray_constants.ENABLE_RAY_CLUSTER = False
    # Ray caches its config (auth mode included) and the token per process.
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
    try:
        yield values
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = old_flag
        for key, value in old_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


def other_hosts() -> list[str]:
    """Addresses of the cluster's nodes on other machines than the driver's."""
    import ray

    nodes = [n for n in ray.nodes() if n["Alive"]]
    driver = ray.get_runtime_context().get_node_id()
    here = {n["NodeManagerAddress"] for n in nodes if n["NodeID"] == driver}
    return sorted({n["NodeManagerAddress"] for n in nodes} - here)


def checkpoints_possible(storage: str | None, *, elsewhere: list[str], log: Log) -> bool:
    """Whether trial checkpoints can reach the storage path from every node.

    Tune copies a checkpoint to the storage path from the node that made it and refuses a local
    path on another machine (its storage validation file is missing there). A named storage is
    the user's promise; without one, only nodes on this machine share the results folder.
    """
    if storage or not elsewhere:
        return True
    log(f"warning: nodes at {', '.join(elsewhere)} may not share this machine's disk and no "
        f"storage was named ({STORAGE_ENV}): trials run without checkpoints (a retried trial "
        "starts over)")
    return False


def check_resources(cpu: float, gpu: float, *, local: bool, log: Log) -> None:
    """Refuse (local Ray) or warn (a cluster that may scale up) when a trial cannot fit."""
    import ray

    have: dict[str, Any] = ray.cluster_resources()
    for key, need in (("CPU", cpu), ("GPU", gpu)):
        if need > have.get(key, 0.0):
            message = (f"resources.{key.lower()}={need:g} per trial, but the Ray cluster has "
                       f"{have.get(key, 0.0):g} {key}s")
            if local:
                raise UserError(message)
            log(f"warning: {message} (waiting for an autoscaler to add them)")
