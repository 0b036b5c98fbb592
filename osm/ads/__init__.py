"""The xDS server core: snapshot cache, ADS stream state machines, the grpc.aio adapter.

One idea: state lives in `cache` (per-proxy snapshots, no grpc), protocol lives in the sans-IO
stream machines `sotw` and `delta` (requests and a snapshot in, responses out), and `server`
is the thin grpc.aio edge that authenticates proxies (`node`, `auth`) and moves messages
between the two. `xds_snapshot` adapts `osm.xds` snapshots to `resources.AdsSnapshot`.
Import modules, not names: ``from osm.ads import cache, server``.
"""
