"""The mesh's trace store: Zipkin v2 spans in (``POST /api/v2/spans``), Zipkin's query API
out (``/api/v2/traces``, ``/api/v2/trace/{id}``, ``/api/v2/services``...), kept in SQLite.

Local mode runs it as the ``jaeger`` Service's pod in ``osm-system`` (``python3 -m
osm.tracing``), so that both data planes' spans land in one place any Zipkin-compatible tool
reads; in Kubernetes mode the mesh points at the user's Jaeger or Zipkin instead. A
stand-alone server: it imports nothing of the mesh but the ground floor.
"""
