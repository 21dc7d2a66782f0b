"""``make demo``: a real local cluster on 127.0.0.1 — a master and two workers.

Homes live in ./demo/master, ./demo/worker1 and ./demo/worker2. The script starts the three
nodes as twistd processes, waits until both workers have joined, prints
``wazuh-cluster-control -l`` and keeps running until Ctrl-C, then stops all three.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

from wazuhcluster.devcluster import LocalCluster, NodeProcess, wait_for


def control(home: Path, *args: str) -> str:
    """Run wazuh-cluster-control on ``home`` and return what it printed."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from wazuhcluster.control.cli import main; main()",
            "--home",
            str(home),
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return result.stdout + result.stderr


def main(argv: list[str] | None = None) -> int:
    """Set up the homes, run the cluster until Ctrl-C (or --seconds), stop everything."""
    parser = argparse.ArgumentParser(prog="wazuhcluster-demo", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default="demo", help="where the nodes' homes are created")
    parser.add_argument(
        "--seconds", type=float, default=0, help="stop after this long (0: wait for Ctrl-C)"
    )
    args = parser.parse_args(argv)
    cluster = LocalCluster(Path(args.dir).absolute())
    cluster.write()
    print(f"Homes under {cluster.base}; cluster port {cluster.port} on 127.0.0.1.")
    nodes = [NodeProcess(cluster.home(cluster.master), "master")]
    nodes += [NodeProcess(cluster.home(name), "worker") for name in cluster.workers]
    stopping: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.append(signum))
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    try:
        for node in nodes:
            node.start()
            print(f"Started {node.role} {node.home.root.name} (pid {node.process.pid}).")  # type: ignore[union-attr]
        everyone = {cluster.master, *cluster.workers}
        joined = wait_for(
            lambda: all(name in control(cluster.home("worker1").root, "-l") for name in everyone),
            timeout=60,
            step=0.5,
        )
        if not joined:
            print("The workers did not join within 60 s; see demo/*/logs/cluster.log.")
            return 1
        print("\n$ wazuh-cluster-control --home demo/worker1 -l")
        print(control(cluster.home("worker1").root, "-l"))
        print("The cluster is running. Logs: demo/*/logs/cluster.log. Press Ctrl-C to stop.")
        deadline = time.monotonic() + args.seconds if args.seconds else None
        while not stopping and (deadline is None or time.monotonic() < deadline):
            if not all(node.running() for node in nodes):
                print("A node stopped unexpectedly; see its logs/twistd.out.")
                return 1
            time.sleep(0.5)
        return 0
    finally:
        for node in reversed(nodes):
            node.stop()
        print("Stopped all nodes.")


if __name__ == "__main__":
    sys.exit(main())
