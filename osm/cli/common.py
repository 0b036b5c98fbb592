"""What every ``osm`` command shares: click settings, failing with a message, and the
`Api` made from the global ``--kubeconfig`` and ``--context`` flags.

One idea: a command never builds its own client; it asks `connect` for the one its
invocation's flags name, and any client error ends the command the same way (the
message on stderr, exit status 1), worded by `osm.cli.client.describe`.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click

from osm.cli.client import Api, describe
from osm.kube.errors import KubeError

CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
KUBECONFIG_KEY = "kubeconfig"
CONTEXT_KEY = "context"


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
