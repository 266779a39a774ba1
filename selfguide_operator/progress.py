"""Live progress from stage pods: an HTTP endpoint, authenticated with TokenReview, that puts each report into the
running stage's `status.stages[].progress`.

Why this design (as Kubeflow Trainer's): stage pods get no write access to the API (no RBAC, no API token).
Each one carries only a projected service-account token whose audience is `selfguide.dev/progress`; the API
server refuses that token for its own requests (wrong audience), so it can do nothing but prove to the operator
which pod is speaking. The operator checks it with a TokenReview (audience, signature, expiry, and that the pod
it is bound to still exists), then that the pod is the named job's stage pod (its labels and UID), and only
then records the numbers. Reports are validated with the contract's `StageProgress` model, so nothing but
bounded numbers reaches status. A stage never waits for the operator: reports are sent from a daemon thread and
dropped when the operator is unreachable; the next report restores the numbers (after an operator restart too).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from selfguide.contract.progress import PROGRESS_AUDIENCE, StageProgress
from selfguide.contract.registry import stage as stage_definition
from selfguide.contract.registry import stage_names
from selfguide.contract.status import Phase, StageStatus
from selfguide_operator.kube import ApiError, Kube
from selfguide_operator.names import LABEL_JOB, LABEL_STAGE

log = logging.getLogger(__name__)

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
POD_NAME = "authentication.kubernetes.io/pod-name"
POD_UID = "authentication.kubernetes.io/pod-uid"
TOKEN_DIR = "/var/run/secrets/selfguide/progress"
TOKEN_FILE = "token"
TOKEN_SECONDS = 3600
"""Lifetime of the projected token (the kubelet renews it at 80%)."""
REVIEW_CACHE_SECONDS = 60.0
ROUTE = "/v1/namespaces/{namespace}/selfguidejobs/{name}/stages/{stage}/progress"


def carried_progress(phase: Phase, previous: StageStatus | None) -> StageProgress | None:
    """What a stage's status keeps of its progress: the last report while it runs, 100% once it succeeded."""
    last = previous.progress if previous is not None else None
    if phase is Phase.SUCCEEDED:
        return (last or StageProgress()).model_copy(update={"percent": 100.0, "eta_seconds": 0.0})
    return last


def token_volume() -> tuple[dict[str, Any], dict[str, Any]]:
    """The projected, audience-bound service-account token of a stage pod, and its mount."""
    volume = {"name": "progress-token", "projected": {"sources": [{"serviceAccountToken": {
        "audience": PROGRESS_AUDIENCE, "expirationSeconds": TOKEN_SECONDS, "path": TOKEN_FILE}}]}}
    return volume, {"name": "progress-token", "mountPath": TOKEN_DIR, "readOnly": True}


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        super().__init__(reason)


@dataclass(frozen=True)
class Caller:
    """The stage pod a valid token belongs to."""

    namespace: str
    pod: str
    uid: str


class Authenticator:
    """Bearer token -> the stage pod it was issued to (TokenReview), then -> whether that pod runs the stage."""

    def __init__(self, kube: Kube, clock: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.clock = clock
        self._reviews: dict[str, tuple[float, Caller]] = {}

    def caller(self, authorization: str | None) -> Caller:
        if not authorization or not authorization.startswith("Bearer ") or not authorization[7:].strip():
            raise Refused(401, "a bearer token is required")
        token = authorization[7:].strip()
        cached = self._reviews.get(token)
        if cached and self.clock() - cached[0] < REVIEW_CACHE_SECONDS:
            return cached[1]
        review = self.kube.request("POST", TOKEN_REVIEWS, body={
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token, "audiences": [PROGRESS_AUDIENCE]}})
        status = review.get("status") or {}
        if not status.get("authenticated") or PROGRESS_AUDIENCE not in (status.get("audiences") or []):
            raise Refused(401, "the token is not valid for " + PROGRESS_AUDIENCE)
        user = status.get("user") or {}
        extra = user.get("extra") or {}
        parts = (user.get("username") or "").split(":")
        if len(parts) != 4 or parts[:2] != ["system", "serviceaccount"] or not extra.get(POD_NAME):
            raise Refused(401, "the token is not bound to a pod")
        caller = Caller(namespace=parts[2], pod=extra[POD_NAME][0], uid=(extra.get(POD_UID) or [""])[0])
        self._reviews = {t: v for t, v in self._reviews.items() if self.clock() - v[0] < REVIEW_CACHE_SECONDS}
        self._reviews[token] = (self.clock(), caller)
        return caller

    def check(self, caller: Caller, namespace: str, name: str, stage: str) -> None:
        """The caller is the pod of SelfGuideJob `name`'s stage `stage`, in `namespace`."""
        if caller.namespace != namespace:
            raise Refused(403, "the token belongs to another namespace")
        try:
            pod = self.kube.request("GET", Kube.path("Pod", namespace, caller.pod))
        except ApiError as error:
            raise Refused(403, f"the token's pod is gone ({error.status})") from None
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        if labels.get(LABEL_JOB) != name or labels.get(LABEL_STAGE) != stage or meta.get("uid") != caller.uid:
            raise Refused(403, f"pod {caller.pod} does not run stage {stage} of {name}")


Recorder = Callable[[str, str, str, StageProgress], bool]
"""(namespace, name, stage, progress) -> whether the report was recorded (False: the stage is not running)."""


class ProgressServer:
    """`POST /v1/namespaces/<ns>/selfguidejobs/<name>/stages/<stage>/progress` on its own thread and loop."""

    def __init__(self, authenticator: Authenticator, record: Recorder, port: int, host: str = "0.0.0.0") -> None:
        self.authenticator = authenticator
        self.record = record
        self.port = port
        self.host = host
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024)
        app.router.add_post(ROUTE, self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        namespace, name, stage = (request.match_info[k] for k in ("namespace", "name", "stage"))
        loop = asyncio.get_running_loop()
        try:
            if stage not in stage_names():
                raise Refused(404, f"unknown stage {stage}")
            declared = stage_definition(stage).progress_counters
            authorization = request.headers.get("Authorization")
            caller = await loop.run_in_executor(None, self.authenticator.caller, authorization)
            await loop.run_in_executor(None, self.authenticator.check, caller, namespace, name, stage)
            try:
                progress = StageProgress.model_validate(json.loads(await request.read()))
            except (ValueError, ValidationError) as error:
                raise Refused(422, f"not a StageProgress: {str(error)[:300]}") from None
            foreign = sorted(progress.counters() - set(declared))
            if foreign:
                raise Refused(422, f"stage {stage} does not report {', '.join(foreign)}")
            if not await loop.run_in_executor(None, self.record, namespace, name, stage, progress):
                raise Refused(409, f"stage {stage} of {name} is not running")
        except Refused as refused:
            log.info("progress report for %s/%s %s refused (%d): %s", namespace, name, stage, refused.status, refused)
            return web.json_response({"message": str(refused)}, status=refused.status)
        except ApiError as error:
            log.warning("progress report for %s/%s %s: %s", namespace, name, stage, error)
            return web.json_response({"message": "the API server could not be reached"}, status=503)
        return web.Response(status=204)

    def start(self) -> bool:
        """Serve in the background; False (logged) when the port cannot be bound: the operator works on
        without live progress rather than stop reconciling."""
        threading.Thread(target=self._serve, name="progress-server", daemon=True).start()
        self._ready.wait(30)
        return self._listening

    _listening = False

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(self.app(), access_log=None)
        try:
            self._loop.run_until_complete(self._runner.setup())
            self._loop.run_until_complete(web.TCPSite(self._runner, self.host, self.port).start())
        except OSError as error:
            log.error("the progress endpoint cannot listen on port %d (no live progress): %s", self.port, error)
            self._ready.set()
            return
        log.info("progress endpoint listening on port %d", self.port)
        self._listening = True
        self._ready.set()
        self._loop.run_forever()
