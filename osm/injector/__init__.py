"""Sidecar injection as OSM's mutating webhook does it, as pure functions.

One idea: injection is a function of its inputs. The Pod and its Namespace (Kubernetes
dicts, as an AdmissionReview carries them), the mesh's scope, the MeshConfig, and what an
injector would otherwise make up itself (the proxy's UUID, its bootstrap certificate) go
in; the decision (`decision`), the mutated Pod, its bootstrap Secret and the RFC 6902
patch between the two pods (`patch`) come out. Nothing here reads a clock, draws a random
number or does I/O, so whoever admits pods (the local API, a webhook) owns those.

Modules: `values` (inputs and the error type), `decision` (inject or not, and with which
data plane), `probes` (OSM's health probe rewriting), `envoy_bootstrap` (the Envoy
bootstrap proto), `secret` (the bootstrap Secret for either data plane), `patch` (the
whole injection), `jsonpatch` (RFC 6902 diff). Import the submodules, not names from here.
"""
