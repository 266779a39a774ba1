"""Shared pytest configuration: the Kubernetes test harness fixtures (tests/harness/fixtures.py) and the real
stage runs on the bundled model that several test packages share (tests/stage_runs.py)."""

pytest_plugins = ["tests.harness.fixtures", "tests.stage_runs"]
