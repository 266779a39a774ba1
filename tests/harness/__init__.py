"""Test harness: a real Kubernetes control plane and a fake GPU kubelet (see docs/testing.md)."""
