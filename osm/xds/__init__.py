"""Envoy xDS v3 generation: from the catalog's policy values to Envoy's own protos.

Pure (no I/O). One module per resource type with the same shape (`lds`, `rds`, `cds`,
`eds`, `sds`: ``resources(policy, context)``), all naming in `names`, and `snapshot`
for per-proxy checked, versioned, shared resource sets. Import the submodules.
"""
