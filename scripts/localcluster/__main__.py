"""``python -m scripts.localcluster up|down|status|destroy [--data-dir DIR] [--cpu-nodes N]``.

``up`` starts the cluster (building its binaries on first use) and returns once it is usable; ``down``
stops what ``up`` started and keeps the data; ``destroy`` also removes the data; ``status`` prints the
version and nodes, exit 1 when the cluster is not running. The data directory defaults to
``.data/localcluster`` (``LOCALCLUSTER_DIR`` overrides it).
"""
import argparse
import os
import sys
from pathlib import Path

from scripts.kubebuild import BuildError

from . import DEFAULT_DIR, ClusterError, LocalCluster, default_pools

ROOT = Path(__file__).resolve().parents[2]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.localcluster", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "down", "status", "destroy"))
    parser.add_argument("--data-dir", default=os.environ.get("LOCALCLUSTER_DIR") or ROOT / ".data" / DEFAULT_DIR)
    parser.add_argument("--cpu-nodes", type=int, default=2, help="simulated CPU nodes (the GPU nodes are fixed)")
    args = parser.parse_args(argv)
    cluster = LocalCluster(args.data_dir, pools=default_pools(args.cpu_nodes))
    try:
        if args.command == "up":
            cluster.up()
        elif args.command == "down":
            stopped = cluster.down()
            print(f"localcluster: stopped {', '.join(stopped) if stopped else 'nothing (not running)'}")
        elif args.command == "destroy":
            cluster.destroy()
            print(f"localcluster: stopped and removed {cluster.dir}")
        else:
            if not cluster.running():
                print("localcluster: not running")
                return 1
            nodes = cluster.request("GET", "/api/v1/nodes").get("items", [])
            print(f"localcluster: {cluster.version()} on {cluster.server}, {len(nodes)} nodes, "
                  f"kubeconfig {cluster.kubeconfig}")
    except (ClusterError, BuildError) as exc:
        print(f"localcluster: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
