"""``osm dashboard``: a local web UI of the running mesh.

The mesh as a live graph with each edge's rate, success and latency from Prometheus, the
edges SMI denies; traffic splits' configured weights beside observed shares; per service the
golden signals over time; proxies with their xDS and certificate state; traces from the
trace store. Sources are read over their own APIs (Kubernetes, Prometheus, Zipkin, the
controller's debug endpoints); a source that is missing, down or slow is a state the UI
shows, never an error page.
"""
