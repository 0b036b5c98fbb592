"""`python -m osm.cli` runs the `osm` command (used where the console script is not on PATH)."""

from osm.cli.main import main

main()
