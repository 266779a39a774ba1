"""The Dockerfile, checked without a container engine: hadolint, and everything it names exists and agrees
with the package, the lock files, the chart and the operator."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from selfguide_operator.names import CACHE_DIR
from selfguide_operator.settings import OperatorSettings
from tests.operator.helpers import ROOT, VENV_BIN

DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS = PYPROJECT["project"]["scripts"]
IMAGES = {"operator": ("operator", ["operator"]), "stage": ("stage", ["engine", "vllm"])}
"""Dockerfile target -> (its lock file in requirements/, the extras it installs)."""


def stages() -> dict[str, list[tuple[str, str]]]:
    """The Dockerfile's instructions (continuation lines joined) by build stage."""
    result: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in re.sub(r"\\\n", " ", DOCKERFILE.read_text()).splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        keyword, _, rest = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            current = result.setdefault(rest.split()[-1], [])
        current.append((keyword.upper(), rest.strip()))
    return result


def arguments(stage: str, keyword: str) -> list[str]:
    return [rest for kw, rest in stages()[stage] if kw == keyword]


def normalized(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement.strip())[0]).lower()


def requirements(extras: list[str]) -> set[str]:
    """Names of the package's dependencies with `extras` (following `selfguide[...]` self-references)."""
    optional = PYPROJECT["project"]["optional-dependencies"]
    names, todo = {normalized(d) for d in PYPROJECT["project"]["dependencies"]}, list(extras)
    while todo:
        for dependency in optional[todo.pop()]:
            if dependency.startswith("selfguide["):
                todo += dependency[len("selfguide["):-1].split(",")
            else:
                names.add(normalized(dependency))
    return names


def test_hadolint_finds_nothing():
    result = subprocess.run([str(VENV_BIN / "hadolint"), str(DOCKERFILE)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_copied_file_exists_and_is_in_the_build_context():
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    for stage in stages():
        for copy in arguments(stage, "COPY"):
            if copy.startswith("--from="):
                continue
            for source in copy.split()[:-1]:
                assert (ROOT / source).exists(), source
                assert Path(source).parts[0] in allowed, f"{source} is left out by .dockerignore"


@pytest.mark.parametrize("target", IMAGES)
def test_each_image_runs_a_console_script_of_the_package_as_uid_1000(target: str):
    [entrypoint] = arguments(target, "ENTRYPOINT")
    assert json.loads(entrypoint)[0] in SCRIPTS
    assert arguments(target, "USER")[-1] == "1000:1000"
    lock = IMAGES[target][0]
    assert "--requirement /tmp/requirements.txt" in " ".join(arguments(target, "RUN"))
    assert arguments(target, "COPY")[0] == f"requirements/{lock}.txt /tmp/requirements.txt"


def test_the_chart_and_the_operator_run_console_scripts_of_the_package():
    deployment = (ROOT / "charts/selfguide/templates/deployment.yaml").read_text()
    assert re.search(r"command: \[(\S+)\]", deployment)[1] in SCRIPTS
    assert OperatorSettings().stage_command[0] in SCRIPTS


@pytest.mark.parametrize("target", IMAGES)
def test_the_lock_pins_every_dependency_the_image_needs_for_its_python(target: str):
    lock_name, extras = IMAGES[target]
    lock = (ROOT / "requirements" / f"{lock_name}.txt").read_text()
    pinned = {normalized(line) for line in lock.splitlines() if "==" in line and not line.startswith(" ")}
    assert requirements(extras) <= pinned
    assert ("torch" in pinned) == (target == "stage")  # the operator image never gets the ML stack
    python = re.search(r"^ARG BASE=python:(\d+\.\d+)-", DOCKERFILE.read_text(), re.MULTILINE)[1]
    assert f"--python-version {python} --python-platform x86_64-manylinux" in lock.splitlines()[1]
    assert f"-o requirements/{lock_name}.txt" in lock.splitlines()[1]


def test_build_commands_in_the_docs_name_real_targets_and_the_charts_image_repositories():
    values = yaml.safe_load((ROOT / "charts/selfguide/values.yaml").read_text())
    repositories = {"operator": values["image"]["repository"],
                    "stage": values["stages"]["image"]["repository"]}
    text = DOCKERFILE.read_text() + (ROOT / "docs/install.md").read_text()
    builds = re.findall(r"docker build --target (\S+) -t ([^:\s]+):", text)
    assert {target for target, _ in builds} == set(IMAGES)
    for target, repository in builds:
        assert target in stages() and repository == repositories[target]


def test_the_stage_image_keeps_its_caches_where_the_operator_mounts_writable_volumes():
    env = " ".join(arguments("stage", "ENV"))
    assert f"HF_HOME={CACHE_DIR}/huggingface" in env and f"SELFGUIDE_CACHE={CACHE_DIR}/selfguide" in env
    assert set(json.loads(arguments("stage", "VOLUME")[0])) == {CACHE_DIR, "/tmp"}
