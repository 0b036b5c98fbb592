"""The command line: environment first, flags override, bad values named."""

from __future__ import annotations

import pytest

from osm.demo.bookstore import __main__ as cli


def test_environment_configures_and_flags_override() -> None:
    environ = {"IDENTITY": "bookthief", "BOOKSTORE_URL": "http://b:1", "METRICS_PORT": "9"}

    from_env = cli.build_parser(environ).parse_args(["client"])
    overridden = cli.build_parser(environ).parse_args(["client", "--identity", "x", "--rate", "2"])

    assert (from_env.identity, from_env.bookstore_url, from_env.metrics_port) == (
        "bookthief",
        "http://b:1",
        9,
    )
    assert (from_env.rate, from_env.timeout, from_env.report_every) == (5.0, 1.5, 5.0)
    assert (overridden.identity, overridden.rate) == ("x", 2.0)


def test_bookstore_defaults_match_the_manifests() -> None:
    args = cli.build_parser({}).parse_args(["bookstore"])

    assert (args.port, args.host, args.warehouse_url, args.restock_every) == (
        14001,
        "0.0.0.0",
        "",
        5,
    )


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["bookstore"], {"PORT": "http"}, "'http' is not a port number"),
        (["client", "--rate", "0"], {}, "'0' is not a positive number"),
        (["view", "--target", "thief=http://x"], {}, "expected ROLE=URL"),
    ],
)
def test_bad_values_are_named(
    argv: list[str], environ: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser(environ).parse_args(argv)

    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
