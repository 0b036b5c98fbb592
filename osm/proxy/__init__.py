"""The Python sidecar: the subset of Envoy that our control plane emits, driven by xDS.

Layers, bottom up: `config` (protos -> frozen model, with an allow-list that refuses what is
not implemented), `http1` (sans-IO HTTP/1.1), `router` and `rbac` (pure decisions),
`tls`, `upstream`, `listeners` and `server` (the asyncio runtime), `stats` and `admin`.
"""
