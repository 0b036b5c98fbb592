"""What ``osm install`` puts into a cluster: its values (`values`) and its manifests
(`manifests`), pure functions with no I/O; the CLI (`osm.cli.install`) sends them."""
