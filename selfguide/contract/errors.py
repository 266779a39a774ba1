"""One error hierarchy; a process's exit code follows from the class of the error that ended it.

    0  success
    1  retryable: anything not known to be hopeless (a retry may help: network, preemption, a busy work dir)
    2  invalid input: the manifest, a data file or a command-line argument is wrong
    3  permanent: valid input that cannot work (model not found, no usable data, no GPU)
    4  quality gate: every stage ran, but the fine-tuned model missed `spec.evaluation.gate` (`selfguide run`
       only; the data, the adapter and the report stay in the work directory for inspection)

Stage Jobs fail at once on 2 and 3 (their podFailurePolicy) and retry on 1.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    RETRYABLE = 1
    INVALID_INPUT = 2
    PERMANENT = 3
    QUALITY_GATE = 4


class SelfGuideError(Exception):
    """Base of every error selfguide raises on purpose; its message is shown to the user as it is."""

    exit_code: ExitCode = ExitCode.RETRYABLE


class RetryableError(SelfGuideError):
    """A failure that a later attempt may not meet (a busy work directory, a lost connection)."""


class InvalidInput(SelfGuideError):
    """Input that breaks a rule: fix the manifest, the data or the arguments."""

    exit_code = ExitCode.INVALID_INPUT


class PermanentError(SelfGuideError):
    """Valid input that cannot work here; retrying cannot help."""

    exit_code = ExitCode.PERMANENT


class QualityGateFailed(SelfGuideError):
    """The job ran, but its fine-tuned model missed the quality gate: it is not published."""

    exit_code = ExitCode.QUALITY_GATE


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code a process ends with after `error`: unknown errors are retryable."""
    return error.exit_code if isinstance(error, SelfGuideError) else ExitCode.RETRYABLE


def error_for(code: int, message: str) -> SelfGuideError:
    """An error of the class that `code` stands for (unknown codes are retryable): how a process raises again
    the failure another process reported with its exit code."""
    classes: dict[int, type[SelfGuideError]] = {
        cls.exit_code: cls for cls in (RetryableError, InvalidInput, PermanentError, QualityGateFailed)}
    return classes.get(code, RetryableError)(message)


def is_permanent(error: BaseException) -> bool:
    """A retry cannot help (invalid input or a permanent failure)."""
    return exit_code_for(error) in (ExitCode.INVALID_INPUT, ExitCode.PERMANENT)
