"""Checks for deployment files (Kubernetes manifests, cluster configs) that catch mistakes before a cluster is paid for."""
