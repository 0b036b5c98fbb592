"""``python -m osm.runtime``: the local runtime's process (started by ``osm up``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from osm import paths
from osm.base import wellknown
from osm.runtime import kubelet


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m osm.runtime",
        description="Run the mesh's pods in network namespaces, following the Kubernetes API.",
    )
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument(
        "--kubeconfig",
        default=None,
        help="The runtime's kubeconfig (osm up passes the one the controller wrote for it). "
        "[default: STATE_DIR/kubelet.kubeconfig]",
    )
    parser.add_argument("--xds-port", type=int, default=wellknown.XDS_PORT)
    parser.add_argument("--http-port", type=int, default=wellknown.CONTROLLER_HTTP_PORT)
    parser.add_argument("--prefix", default="osm")
    parser.add_argument("--pod-python", type=Path, default=Path("/opt/osm/venv"))
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = kubelet.RuntimeSettings(
        state_dir=args.state_dir,
        kubeconfig=Path(args.kubeconfig or paths.kubelet_kubeconfig_path(args.state_dir)),
        xds_port=args.xds_port,
        http_port=args.http_port,
        prefix=args.prefix,
        pod_python=args.pod_python,
    )
    asyncio.run(kubelet.serve(settings))


if __name__ == "__main__":
    main()
