"""The Kubernetes REST API over the store: local mode's API server (as k3s serves
kube-apiserver over SQLite). Clients reach it with a kubeconfig and a client certificate.
"""
