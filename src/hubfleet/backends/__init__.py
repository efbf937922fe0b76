"""Backends: the only layer that changes the world (local processes, Kubernetes releases)."""
