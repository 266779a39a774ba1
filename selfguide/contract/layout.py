"""Where the stages put their artifacts in a work directory: the same layout locally and on the cluster's PVC.

  <workdir>/spec.json     the spec the stages ran with
  <workdir>/.lock         held by the process running stages here (a second one fails clearly)
  <workdir>/.checkpoints/ resumable in-stage state, per stage and stage hash; deleted once the stage commits
  <workdir>/generate/     train.jsonl, candidates.jsonl, filter_report.json, record.json
  <workdir>/train/        adapter/ (LoRA) or model/ (full fine-tuning), merged/ (optional), metrics.jsonl,
                          record.json
  <workdir>/evaluate/     report.json, report.md, report.html, *.png, record.json
  <workdir>/serving/      vllm-serve.sh, modeladapter.yaml (LoRA), serving.json: written once the adapter is
                          published (the last stage succeeded and the quality gate, if any, passed)

`*_FILE` and `*_DIR` names are relative to their stage's directory (a stage writes into a staging directory
that is renamed into place); the other paths are relative to the work directory.
"""

from __future__ import annotations

from selfguide.spec.training import TrainingMethod

RECORD_FILE = "record.json"
"""In every stage directory: the stage record (see `selfguide.contract.record`)."""
SPEC_FILE = "spec.json"
LOCK_FILE = ".lock"
CHECKPOINTS_DIR = ".checkpoints"
TRAIN_FILE = "train.jsonl"
CANDIDATES_FILE = "candidates.jsonl"
FILTER_REPORT_FILE = "filter_report.json"
ADAPTER_DIR = "adapter"
MODEL_DIR = "model"
MERGED_DIR = "merged"
METRICS_FILE = "metrics.jsonl"
REPORT_FILE = "report.json"
REPORT_HTML_FILE = "report.html"
SERVING_DIR = "serving"
VLLM_SCRIPT_FILE = "vllm-serve.sh"
MODEL_ADAPTER_FILE = "modeladapter.yaml"
SERVING_JSON_FILE = "serving.json"

TRAIN_DATA = f"generate/{TRAIN_FILE}"
FILTER_REPORT = f"generate/{FILTER_REPORT_FILE}"
CANDIDATES = f"generate/{CANDIDATES_FILE}"
REPORT = f"evaluate/{REPORT_FILE}"
REPORT_HTML = f"evaluate/{REPORT_HTML_FILE}"


def trained_model_dir(method: TrainingMethod) -> str:
    """What the train stage leaves: an adapter for LoRA, a whole model for full fine-tuning."""
    return f"train/{ADAPTER_DIR if method is TrainingMethod.LORA else MODEL_DIR}"
