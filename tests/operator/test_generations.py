"""Generation-consistent status: each stage records the generation and spec hash its Job was created with, and
`status.observedGeneration` never claims results that the current spec did not produce."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from selfguide.contract.confighash import spec_hash, stage_hash
from selfguide.contract.registry import stage_names
from selfguide.contract.status import Phase
from selfguide.spec import SelfGuideJobSpec
from selfguide_operator.observed import Observed
from selfguide_operator.planner import CreateJob, plan
from selfguide_operator.settings import OperatorSettings
from tests.operator.helpers import manifest
from tests.operator.test_planner import child, done, observed, then

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SETTINGS = OperatorSettings()


def annotated(stage_name: str, state: str, generation: int, spec: SelfGuideJobSpec, base=None):
    """A stage Job as the operator created it for `generation` of `spec`."""
    made = base or child(stage_name, state)
    return replace(made, generation=generation, config_hash=spec_hash(spec, stage_name))


def at_generation(number: int, status, **spec):
    """The SelfGuideJob at `metadata.generation` `number` with these spec fields (`generation` may be one)."""
    body = manifest("demo", **spec)
    body["metadata"] |= {"namespace": "ns", "uid": "uid-1", "generation": number, "labels": {}}
    return replace(Observed.from_body(body), status=status)


def spec_of(job) -> SelfGuideJobSpec:
    assert job.spec is not None
    return job.spec


@pytest.mark.parametrize("changes", [{}, {"generation": {"seed": 7}}, {"training": {"epochs": 1}},
                                     {"model": {"hfTokenSecret": {"name": "hf"}}}])
def test_the_operators_hash_changes_exactly_when_the_runners_does(changes):
    base = SelfGuideJobSpec.model_validate(manifest("x")["spec"])
    spec = SelfGuideJobSpec.model_validate(manifest("x", **changes)["spec"])
    for name in stage_names():
        assert (spec_hash(spec, name) == spec_hash(base, name)) == (
            stage_hash(spec, name, {}) == stage_hash(base, name, {}))


def test_stage_jobs_carry_the_generation_and_spec_hash_and_status_records_them():
    job = observed(generation=3)
    result = plan(job, {}, SETTINGS, NOW)
    created = next(a for a in result.actions if isinstance(a, CreateJob)).body
    assert created["metadata"]["annotations"] == {"selfguide.dev/generation": "3",
                                                  "selfguide.dev/config-hash": spec_hash(spec_of(job), "generate")}
    entry = result.status.stages[0]
    assert (entry.generation, entry.config_hash) == (3, spec_hash(spec_of(job), "generate"))


def test_a_spec_edit_the_running_stage_reads_holds_the_observed_generation_back():
    first = observed(generation=1)
    running = annotated("generate", "running", 1, spec_of(first))
    first = then(first, plan(first, {"generate": running}, SETTINGS, NOW))
    assert first.status.observed_generation == 1
    edited = at_generation(2, first.status, generation={"seed": 7})
    result = plan(edited, {"generate": running}, SETTINGS, NOW)
    assert result.status.observed_generation == 1  # generate runs with the generation-1 spec
    finished = annotated("generate", "complete", 1, spec_of(first), base=done("generate"))
    result = plan(then(edited, result), {"generate": finished}, SETTINGS, NOW)
    assert result.status.stages[0].phase is Phase.SUCCEEDED and result.status.observed_generation == 1
    assert result.status.generation is not None  # its results are shown, but not as generation 2's


def test_a_spec_edit_no_finished_stage_reads_is_observed_at_once():
    first = observed(generation=1)
    running = annotated("generate", "running", 1, spec_of(first))
    first = then(first, plan(first, {"generate": running}, SETTINGS, NOW))
    edited = replace(observed(generation=2, training={"epochs": 1}), status=first.status)
    assert plan(edited, {"generate": running}, SETTINGS, NOW).status.observed_generation == 2


def test_a_finished_job_edited_afterwards_keeps_the_generation_its_results_came_from():
    job = observed(generation=1, evaluation=None)
    spec = spec_of(job)
    children = {"generate": annotated("generate", "", 1, spec, base=done("generate")),
                "train": annotated("train", "", 1, spec, base=done("train"))}
    job = then(job, plan(job, {"generate": children["generate"]}, SETTINGS, NOW))
    job = then(job, plan(job, children, SETTINGS, NOW))
    assert job.status.phase is Phase.SUCCEEDED and job.status.observed_generation == 1
    edited = replace(observed(generation=2, evaluation=None, training={"epochs": 1}), status=job.status)
    assert plan(edited, children, SETTINGS, NOW).status.observed_generation == 1
    relabelled = replace(observed(generation=2, evaluation=None, suspend=False), status=job.status)
    assert plan(relabelled, children, SETTINGS, NOW).status.observed_generation == 2  # no section changed


def test_a_queued_stage_job_shows_as_pending_never_running():
    job = observed(labels={"kueue.x-k8s.io/queue-name": "gpus"})
    queued = child("generate", "pending", suspended=True)
    entry = plan(then(job, plan(job, {}, SETTINGS, NOW)), {"generate": queued}, SETTINGS, NOW).status.stages[0]
    assert entry.phase is Phase.PENDING and "queued" in (entry.message or "")
