"""The `osm` command line."""
