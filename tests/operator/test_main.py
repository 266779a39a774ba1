"""The `selfguide-operator` command line refuses bad settings and a missing cluster in one line each."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfguide_operator.main import main


def test_invalid_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("SELFGUIDE_BACKOFF_LIMIT", "-1")
    monkeypatch.setenv("SELFGUIDE_STAGE_RESOURCES", "{not json")
    assert main([]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert sorted(line.split(": ")[1] for line in lines) == ["SELFGUIDE_BACKOFF_LIMIT", "SELFGUIDE_STAGE_RESOURCES"]


def test_no_cluster_configuration(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                  tmp_path: Path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert main(["--metrics-port", "0"]) == 2
    assert "no cluster to talk to" in capsys.readouterr().err


def test_namespaces_and_all_namespaces_exclude_each_other():
    with pytest.raises(SystemExit):
        main(["--namespace", "a", "--all-namespaces"])
