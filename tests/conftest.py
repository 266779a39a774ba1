"""Shared pytest configuration: the Kubernetes test harness fixtures (tests/harness/fixtures.py)."""

pytest_plugins = ["tests.harness.fixtures"]
