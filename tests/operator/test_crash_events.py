"""No lost and no doubled Events across an operator crash, on the real API server: a reconcile killed right
after its status patch, or right before it, followed by a fresh operator's reconcile of the same job."""

from __future__ import annotations

from typing import Any

import pytest

from selfguide_operator.handlers import _stage_job
from selfguide_operator.kube import Kube
from selfguide_operator.prometheus_metrics import Metrics
from selfguide_operator.reconciler import Reconciler
from selfguide_operator.settings import OperatorSettings
from tests.operator.helpers import manifest

pytestmark = pytest.mark.integration


class Killed(BaseException):
    """The process dies here (not an Exception: nothing may handle it)."""


class DiesAtTheStatusPatch(Kube):
    def __init__(self, client, after: bool) -> None:
        super().__init__(client)
        self.after = after

    def merge_patch(self, kind: str, namespace: str, name: str, body: dict[str, Any],
                    subresource: str | None = None) -> None:
        if subresource == "status" and not self.after:
            raise Killed
        super().merge_patch(kind, namespace, name, body, subresource)
        if subresource == "status":
            raise Killed


def reasons(kube: Kube, namespace: str, name: str) -> list[str]:
    events = kube.list("Event", namespace, field_selector=f"involvedObject.name={name}")
    return sorted(e["reason"] for e in events for _ in range(e.get("count") or 1))


@pytest.mark.parametrize("after", [True, False], ids=["killed-after-the-status-patch", "killed-before-it"])
def test_a_crash_around_the_status_patch_loses_and_doubles_no_event(api_client, sgjs, namespace, after):
    kube = Kube(api_client)
    body = sgjs.create(manifest("crashy"))
    with pytest.raises(Killed):
        Reconciler(DiesAtTheStatusPatch(api_client, after), OperatorSettings(), Metrics()).reconcile(body, [])
    jobs = [_stage_job(j) for j in kube.list("Job", namespace, "selfguide.dev/job=crashy")]
    assert [j["metadata"]["name"] for j in jobs] == ["crashy-generate"]
    Reconciler(kube, OperatorSettings(), Metrics()).reconcile(sgjs.get("crashy"), jobs)  # the restarted operator
    assert sgjs.status("crashy")["phase"] == "Pending"
    assert reasons(kube, namespace, "crashy") == ["Waiting"]
