"""`ray start` whose nodes stay on 127.0.0.1: cluster/local_cluster.sh runs its nodes with it.

    python cluster/ray_loopback.py start --node-ip-address=127.0.0.1 ...   # as `ray start`

Why (Ray 2.60, read in its source and seen in the processes' command lines):

- every gRPC server of a node (GCS, raylet, object manager, each worker) listens on 127.0.0.1
  only if the node's address is exactly ``127.0.0.1``, and on 0.0.0.0 otherwise;
- ``ray start`` does not keep ``--node-ip-address=127.0.0.1`` (nor ``--address=127.0.0.1:P``):
  ``services.resolve_ip_for_localhost`` replaces a loopback address by the machine's LAN
  address, so ``gcs_server`` ran with ``--node-ip-address=<LAN address>`` and listened on *:P;
- the one switch Ray has, ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (read when ``ray`` is
  imported), keeps loopback addresses, but then ``ray start --address`` refuses to start a
  worker node ("Multi-node Ray clusters are not supported").

So this is Ray's own ``ray start`` with that one replacement left out for 127.0.0.1. A driver
joining such a cluster needs ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` in its environment, or it
looks for the cluster at the LAN address (``local_cluster.sh env`` exports it).
tests/cluster/test_local_cluster.py checks the outcome from outside: every listening socket of
the nodes.
"""

from __future__ import annotations

import sys

from ray._private import services
from ray.scripts.scripts import main

_resolve = services.resolve_ip_for_localhost


def _keep_loopback(host: str) -> str:
    return host if host == "127.0.0.1" else _resolve(host)


if __name__ == "__main__":
    services.resolve_ip_for_localhost = _keep_loopback
    sys.argv[0] = "ray"
    sys.exit(main())
