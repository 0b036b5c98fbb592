"""Traffic interception: the iptables rules of OSM's init container, and applying them.

``rules`` is pure (configuration in, ``iptables-restore`` text out); ``apply`` runs that
text inside a pod's network namespace.
"""
