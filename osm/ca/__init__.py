"""Workload identity and certificates: the mesh's certificate authority.

One idea: every workload identity (a service account) gets a short-lived leaf certificate from
an `issuer.Issuer`; `manager.CertificateManager` keeps one current leaf per identity and renews
it at half-life, and `builtin.BuiltinCA` is the in-process issuer whose roots rotate through
the pure state machine in `rotation`. Import modules, not names: ``from osm.ca import manager``.
"""
