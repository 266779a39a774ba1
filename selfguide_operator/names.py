"""Names, labels and paths shared by the operator's modules (one place, so children stay findable)."""

from __future__ import annotations

from selfguide.spec import GROUP

LABEL_JOB = f"{GROUP}/job"
"""On every child (ConfigMap, Jobs, pods): the owning SelfGuideJob's name."""
LABEL_STAGE = f"{GROUP}/stage"
"""On stage Jobs and their pods: generate, train or evaluate."""
ANNOTATION_GENERATION = f"{GROUP}/generation"
"""On stage Jobs: the SelfGuideJob's metadata.generation the Job was created for."""
ANNOTATION_CONFIG_HASH = f"{GROUP}/config-hash"
"""On stage Jobs: the hash of the spec sections the stage reads (selfguide.contract.confighash)."""
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
"""A SelfGuideJob with this label runs its stages through Kueue: Jobs are created suspended for Kueue to admit."""
MANAGED_BY = "selfguide-operator"

SPEC_DIR = "/etc/selfguide"
SPEC_FILE = "job.yaml"
DATA_DIR = "/data"
"""Mount path of the output claim; a job's artifacts live in `<claim>/<namespace>/<name>/`."""
CLAIMS_DIR = "/mnt/pvc"
"""Claims referenced by `pvc://claim/path` in the spec are mounted read-only at `/mnt/pvc/<claim>`."""
CACHE_DIR = "/cache"
"""The model cache: `spec.modelCache`'s claim, else an emptyDir."""
TERMINATION_LOG = "/dev/termination-log"
CONTAINER = "stage"


def spec_config_map_name(job: str) -> str:
    return f"{job}-spec"


def stage_job_name(job: str, stage: str) -> str:
    return f"{job}-{stage}"


def workdir(namespace: str, job: str) -> str:
    """A job's artifact directory inside stage pods."""
    return f"{DATA_DIR}/{namespace}/{job}"
