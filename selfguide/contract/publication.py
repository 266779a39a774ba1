"""The publication rule, shared by `selfguide run`/`selfguide stage` (serving files in the work directory) and the
operator (`status.outputs`): a job's model may be published when its spec sets no quality gate, or when the
evaluation ran and passed it. Pure functions of the spec and the evaluation's result."""

from __future__ import annotations

from selfguide.contract.results import EvaluateResult, GateResult
from selfguide.spec import SelfGuideJobSpec


def gated(spec: SelfGuideJobSpec) -> bool:
    """The spec sets a quality gate (`spec.evaluation.gate`)."""
    return spec.evaluation is not None and spec.evaluation.gate is not None


def may_publish(spec: SelfGuideJobSpec, evaluation: EvaluateResult | None) -> bool:
    """The model may be published: no gate, or an evaluation that passed it (a gated job without its evaluation's
    verdict may not)."""
    if not gated(spec):
        return True
    return evaluation is not None and evaluation.gate is not None and evaluation.publishable


def missed_gate(spec: SelfGuideJobSpec, evaluation: EvaluateResult | None) -> GateResult | None:
    """The gate the evaluated model missed; None when there is no gate, no verdict yet, or the model passed."""
    if not gated(spec) or evaluation is None or evaluation.gate is None or evaluation.gate.passed:
        return None
    return evaluation.gate
