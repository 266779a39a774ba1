"""The stage contract: what a stage process and its callers (the CLI, the local runner, the operator) agree on.

Stage definitions (`registry`, the built-in ones in `stages`), exit codes (`errors`), the termination message
(`termination`), each stage's typed result (`results`), the work-directory layout (`layout`) and the stage
record (`record`). It imports nothing but the spec.
"""

from selfguide.contract import stages as _builtin_stages  # noqa: F401  (registers generate, train, evaluate)
