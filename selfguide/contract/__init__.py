"""The stage contract: what a stage process and its callers (the CLI, the local runner, the operator) agree on.

The stage registry (`registry`; each stage declares itself in its package), exit codes (`errors`), the
termination message (`termination`), each stage's typed result (`results`), the work-directory layout (`layout`)
and the stage record (`record`). It imports nothing but the spec.
"""
