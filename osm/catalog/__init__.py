"""The mesh catalog: from the mesh's resources to each proxy's traffic policy.

Pure (no I/O). `state.MeshState` holds the resources, indexed and updated by events;
`catalog.Catalog` answers "what may this proxy do" with plain frozen values
(`policy`), which the xDS builders (`osm.xds`) turn into Envoy configuration. The
rules behind its answers live in `membership`, `splits`, `outbound` and `inbound`;
`dirty` says which answers a change may alter. Import the submodules, not names from
here.
"""
