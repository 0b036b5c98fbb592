"""What every ``osm`` command shares: click settings, failing with a message, and the
`Api` made from the global ``--kubeconfig`` and ``--context`` flags.

One idea: a command never builds its own client; it asks `connect` for the one its
invocation's flags name, and any client error ends the command the same way (the
message on stderr, exit status 1), worded by `osm.cli.client.describe`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from osm.base import wellknown
from osm.cli.client import Api, describe
from osm.kube.config import find_kubeconfig, in_a_pod
from osm.kube.errors import KubeConfigError, KubeError

CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
KUBECONFIG_KEY = "kubeconfig"
CONTEXT_KEY = "context"
CA_BUNDLE_SECRET = wellknown.CA_BUNDLE_SECRET_NAME
"""OSM's Secret holding the mesh root in Kubernetes mode (`osm.webhook.ca_secret`)."""
F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit 1."""
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def fail_with(error: KubeError | ValueError, server: str = "") -> NoReturn:
    """Print a client error as kubectl would and exit 1."""
    click.echo(describe(error, server), err=True)
    sys.exit(1)


def connect(ctx: click.Context) -> Api:
    """The `Api` of this invocation's ``--kubeconfig`` and ``--context`` (when the command
    runs outside the ``osm`` group: `find_kubeconfig`'s choice); exits 1 with what to do
    when there is no usable kubeconfig."""
    obj = ctx.find_root().obj
    options = obj if isinstance(obj, dict) else {}
    try:
        return Api.connect(options.get(KUBECONFIG_KEY), context=options.get(CONTEXT_KEY))
    except KubeError as error:
        fail_with(error)


# -- the control plane's processes in Kubernetes mode ---------------------------------------
def control_plane_options(peer: str) -> Callable[[F], F]:
    """The flags the controller and the injector share in Kubernetes mode, OSM's names:
    ``--kubeconfig`` (the parameter ``local_kubeconfig``), ``--osm-namespace``,
    ``--ca-bundle-secret-name`` (the root shared with `peer`) and ``--log-level``."""
    options = (
        click.option(
            "--kubeconfig",
            "local_kubeconfig",
            default=None,
            type=click.Path(dir_okay=False),
            help="The kubeconfig to use (as `osm --kubeconfig`). [default: the pod's service "
            "account in a cluster, else $KUBECONFIG or ~/.kube/config]",
        ),
        click.option(
            "--osm-namespace",
            default=wellknown.CONTROL_PLANE_NAMESPACE,
            show_default=True,
            help="The control plane's namespace.",
        ),
        click.option(
            "--ca-bundle-secret-name",
            default=CA_BUNDLE_SECRET,
            show_default=True,
            help=f"The Secret holding the mesh root, shared with the {peer}.",
        ),
        click.option(
            "--log-level",
            default="info",
            show_default=True,
            type=click.Choice(["debug", "info", "warning", "error"]),
        ),
    )

    def apply(command: F) -> F:
        for option in reversed(options):
            command = option(command)
        return command

    return apply


def kubeconfig_of(ctx: click.Context, local: str | None) -> Path | None:
    """A control-plane process's kubeconfig: its own ``--kubeconfig``, else the ``osm``
    group's; in a pod (``KUBERNETES_SERVICE_HOST`` set) None, for its service account;
    elsewhere kubectl's search (``$KUBECONFIG``, then ``~/.kube/config``)."""
    chosen = local or (ctx.obj.get(KUBECONFIG_KEY) if ctx.obj else None)
    if chosen:
        return Path(chosen)
    if in_a_pod():
        return None
    try:
        return find_kubeconfig()
    except KubeConfigError as error:
        fail(str(error))


def log_to_stderr(level: str) -> None:
    """A long-running process's log lines: time, level, logger, message."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
