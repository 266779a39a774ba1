"""gitops/argocd/health.lua under a real Lua 5.1 interpreter (Argo CD's gopher-lua implements Lua 5.1), on
SelfGuideJobs as the operator leaves them."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from lupa import lua51

from tests.gitops.samples import SITUATIONS
from tests.operator.helpers import ROOT

HEALTH_LUA = ROOT / "gitops/argocd/health.lua"
CUSTOMIZATION = "resource.customizations.health.selfguide.dev_SelfGuideJob"


def health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = lua51.LuaRuntime()
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(HEALTH_LUA.read_text())
    return result["status"], result["message"]


@pytest.mark.parametrize(("situation", "expected"), [
    ("created", ("Progressing", "Waiting for the selfguide operator")),
    ("pending", ("Progressing", "waiting for stage generate to start")),
    ("running", ("Progressing", "stage train running; 1/3 stages done")),
    ("edited", ("Progressing", "Waiting for the operator to observe generation 2")),
    ("succeeded", ("Healthy", "all 3 stages succeeded")),
    ("failed", ("Degraded", "stage train failed: the stage pod exited with code 3")),
    ("suspended", ("Suspended", "spec.suspend is true; 0/3 stages done")),
])
def test_health_follows_the_conditions_the_operator_writes(situation: str, expected: tuple[str, str]):
    assert health(SITUATIONS[situation]) == expected


def test_a_suspend_not_yet_observed_is_already_suspended():
    obj = copy.deepcopy(SITUATIONS["edited"])
    obj["spec"]["suspend"] = True
    assert health(obj) == ("Suspended", "spec.suspend is true")


def test_a_finished_job_keeps_its_health_after_a_later_edit():
    for situation, status in (("succeeded", "Healthy"), ("failed", "Degraded")):
        obj = copy.deepcopy(SITUATIONS[situation])
        obj["metadata"]["generation"] = 2
        obj["spec"]["suspend"] = True
        assert health(obj)[0] == status


def test_the_argocd_cm_snippet_in_the_docs_is_the_health_check():
    docs = (ROOT / "docs/gitops.md").read_text()
    snippet = re.search(rf"  {re.escape(CUSTOMIZATION)}: \|\n((?:    .*\n|\n)+)", docs)
    assert snippet, f"docs/gitops.md lacks the {CUSTOMIZATION} snippet"
    lines = snippet[1].rstrip("\n").split("\n")
    assert "\n".join(line[4:] for line in lines) + "\n" == HEALTH_LUA.read_text()
