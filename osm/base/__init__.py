"""The ground floor: the conventions every process of the mesh shares.

One idea: what several processes must agree on (an identity's names, a node id's format,
OSM's ports and annotations, the xDS type URLs, how addresses are allocated) is written
once, here, and imported from here. This package imports nothing else of the project, so
anything may import it: the pure core, the control plane, the runtime and the sidecar.
"""
