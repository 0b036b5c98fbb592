"""Envoy xDS v3 generation: from the catalog's policy values to Envoy's own protos.

Pure (no I/O). One module per resource type with the same shape (`lds`, `rds`, `cds`,
`eds`, `sds`: ``outbound_resources`` and ``inbound_resources``, each taking exactly the
values it reads), all naming in `names`; `snapshot` for per-proxy checked, versioned
resource sets, `layers` for the shared pieces they are stacked from, and `generator` to
build them for every proxy. Import the submodules.
"""
