"""Local mode's plumbing: the mesh network, pods as processes, sidecar bootstraps, teardown.

Everything the runtime creates outside its own process is journaled first
(`osm.runtime.record`), so `osm.runtime.record.teardown` can always undo it.
"""
