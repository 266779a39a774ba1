"""The reasons of the SelfGuideJob's conditions and Events, one constant each (as Kubeflow's operators name theirs),
and the Kubernetes reasons the operator reads."""

from __future__ import annotations

# -- the job failed ------------------------------------------------------------------------------------------------
INVALID_SPEC = "InvalidSpec"
"""The spec fails validation or the admin policy."""
SPEC_TOO_LARGE = "SpecTooLarge"
"""The spec cannot fit the ConfigMap stage pods read it from (or the API refused a child object as too large)."""
INVALID_SPEC_CONFIG_MAP = "InvalidSpecConfigMap"
INVALID_STAGE_JOB = "InvalidStageJob"
NAME_CONFLICT = "NameConflict"
"""A child's name is taken by an object this SelfGuideJob does not own."""
PERMANENT_ERROR = "PermanentError"
"""A stage exited with the code of invalid input or a permanent error (the Job's pod failure policy)."""
BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
DEADLINE_EXCEEDED = "DeadlineExceeded"
STAGE_FAILED = "StageFailed"
PENDING_TIMEOUT = "PendingTimeout"
QUALITY_GATE_FAILED = "QualityGateFailed"

# -- where it stands -----------------------------------------------------------------------------------------------
COMPLETED = "Completed"
SUSPENDED = "Suspended"
STAGE_RUNNING = "StageRunning"
WAITING = "Waiting"
STARTING = "Starting"
"""A stage Job created moments ago, its pod not looked at yet."""
NO_POD = "NoPod"
POD_PENDING = "PodPending"

# -- stage Events --------------------------------------------------------------------------------------------------
STAGE_STARTED = "StageStarted"
STAGE_SUCCEEDED = "StageSucceeded"

# -- reconciliation ------------------------------------------------------------------------------------------------
RECONCILED = "Reconciled"
RECONCILE_FAILED = "ReconcileFailed"
RECONCILE_ERROR = "ReconcileError"
"""The Event of a reconciliation that raised."""

# -- Kubernetes' own -----------------------------------------------------------------------------------------------
FAILED_CREATE = "FailedCreate"
"""The Job controller's Event for a pod it could not create; passed on as the waiting reason."""
UNSCHEDULABLE = "Unschedulable"
CONTAINER_CREATING = "ContainerCreating"
POD_INITIALIZING = "PodInitializing"
ADMISSION = "Admission"
POD_FAILURE_POLICY = "PodFailurePolicy"
"""A stage Job's Failed condition when its pod failure policy failed it."""
