"""What the operator publishes when a job finishes: the quality gate's verdict and the `status.outputs` it allows.

Pure functions of the spec, the stages' status and the evaluation result, used by the planner."""

from __future__ import annotations

from typing import Any

from selfguide.contract.layout import SERVING_DIR, trained_model_dir
from selfguide.contract.publication import gated, may_publish, missed_gate
from selfguide.contract.registry import stage as stage_definition
from selfguide.contract.results import EvaluateResult
from selfguide.contract.serving import model_adapter
from selfguide.contract.status import Outputs, Phase, StageStatus
from selfguide.spec import SelfGuideJobSpec, TrainingMethod
from selfguide.spec.uris import PvcUri
from selfguide_operator import reasons
from selfguide_operator.builders import artifact_uri, child_metadata, output_claim
from selfguide_operator.names import workdir
from selfguide_operator.observed import Observed, clip
from selfguide_operator.settings import OperatorSettings
from selfguide_operator.status import Verdict


def gate_failure(spec: SelfGuideJobSpec, evaluation: EvaluateResult | None) -> Verdict | None:
    """The verdict for a job whose stages all succeeded but whose model missed the gate; None otherwise."""
    if (gate := missed_gate(spec, evaluation)) is None:
        return None
    return Verdict(Phase.FAILED, reasons.QUALITY_GATE_FAILED, clip(f"{gate.message()}; the adapter is not "
                                                           "published (the data and the report are kept)"))


def warnings(evaluation: EvaluateResult | None) -> str:
    """What the evaluation found beyond its scores (a collapse, an annotator that cannot help), for the message of
    a job that succeeded; empty when nothing."""
    if evaluation is None or evaluation.findings is None:
        return ""
    return "".join(f"; warning: {message}" for message in evaluation.findings.messages())


def published(spec: SelfGuideJobSpec, entries: list[StageStatus], evaluation: EvaluateResult | None) -> bool:
    """The model may be named in `status.outputs`: every stage succeeded, and the gate (if any) passed
    (`selfguide.contract.publication.may_publish`, the rule `selfguide run` publishes by). Without a gate the
    adapter is named as soon as the train stage succeeded."""
    if not gated(spec):
        return True
    done = bool(entries) and all(e.phase is Phase.SUCCEEDED for e in entries)
    return done and may_publish(spec, evaluation)


def model_adapter_body(job: Observed) -> dict[str, Any] | None:
    """The AIBrix ModelAdapter the operator creates for a published LoRA adapter when `spec.serving` is set
    (the same manifest as `serving/modeladapter.yaml`), owned by the SelfGuideJob."""
    spec = job.spec
    if spec is None or spec.serving is None or spec.training.method is not TrainingMethod.LORA:
        return None
    adapter_path = f"{workdir(job.namespace, job.name)}/{trained_model_dir(spec.training.method)}"
    body = model_adapter(spec, job.name, job.namespace, adapter_path)
    metadata = child_metadata(job, job.name)
    body["metadata"] = metadata | {"labels": metadata["labels"] | body["metadata"]["labels"]}
    return body


def outputs(job: Observed, settings: OperatorSettings, entries: list[StageStatus],
            evaluation: EvaluateResult | None) -> Outputs | None:
    """The URIs of the succeeded stages' artifacts; the model, its base and its serving files only once
    published."""
    assert job.spec is not None
    succeeded = [e.name for e in entries if e.phase is Phase.SUCCEEDED]
    values: dict[str, str] = {stage_definition(name).output_field: artifact_uri(job, settings, name)
                              for name in succeeded}
    if "adapter" in values:
        if published(job.spec, entries, evaluation):
            values["base_model"] = job.spec.model.name
            if len(succeeded) == len(entries):
                claim = output_claim(job.spec, settings)
                values["serving"] = str(PvcUri(claim, f"{job.namespace}/{job.name}/{SERVING_DIR}"))
                if model_adapter_body(job) is not None:  # applied in the same reconcile, before this status
                    values["model_adapter"] = job.name
        else:
            del values["adapter"]
    return Outputs(**values) if values else None
