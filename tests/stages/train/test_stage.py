"""The `train` stage: LoRA on the real bundled model, and full fine-tuning, merging and crash-resume on a tiny
random Llama (same tokenizer and chat template) so that those stay fast."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from selfguide.artifacts import atomic_write_jsonl
from selfguide.manifest import validate_object
from selfguide.runner import current_hash, stage_hash
from tests.stage_runs import (
    kill,
    read_jsonl,
    run_cli,
    sentiment_manifest,
    start_cli,
    wait_for,
    write_manifest,
)
from tests.test_runner import record

EXAMPLES = [
    {"input": "Works great, I use it every day.", "output": "positive"},
    {"input": "The strap snapped within a week.", "output": "negative"},
    {"input": "Lovely colours and very sturdy.", "output": "positive"},
    {"input": "Arrived scratched and the seller ignored me.", "output": "negative"},
]


def training_workdir(root: Path, examples: list[dict]) -> Path:
    """A work directory whose generate stage produced `examples`: its training set and its record (the train
    stage reads train.jsonl; the runner needs the upstream record to chain its hash)."""
    atomic_write_jsonl(root / "generate" / "train.jsonl", examples)
    record(root, "generate", validate_object(sentiment_manifest()).spec)
    return root


def job(model: str | None = None, **training):
    manifest = sentiment_manifest(training=training)
    if model is not None:
        manifest["spec"]["model"] = {"name": model}
    return manifest


def run_train_stage(manifest: dict, workdir: Path):
    from selfguide.runner import run_stage

    return run_stage(validate_object(manifest).spec, workdir, "train")


def prompt_ids(tokenizer):
    import torch

    from selfguide.engine.backends.chat import render_chat
    from selfguide.prompts import few_shot_messages
    from selfguide.spec import TaskSpec

    task = TaskSpec.model_validate(sentiment_manifest()["spec"]["task"])
    text = render_chat(tokenizer, few_shot_messages(task, "Terrible, it broke on day one.")) + "neg"
    return torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"][-64:]])  # the end is enough


def logits(model, ids):
    import torch

    with torch.no_grad():
        return model(ids).logits.float()


# -- LoRA on the bundled model ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    workdir = training_workdir(tmp_path_factory.mktemp("lora"), EXAMPLES)
    # one step per epoch and short sequences: a 135M model trains slowly on 2 shared CPU cores
    manifest = job(epochs=5, learningRate=1e-3, batchSize=4, maxLength=64)
    outcome = run_train_stage(manifest, workdir)
    return manifest, workdir, outcome


@pytest.mark.slow
def test_training_lowers_the_loss(lora_run):
    _, workdir, outcome = lora_run
    metrics = read_jsonl(workdir / "train" / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(1, 6))  # 4 examples / batch 4 x 5 epochs
    assert metrics[-1]["epoch"] == pytest.approx(5.0)
    losses = [m["loss"] for m in metrics]
    assert all(loss > 0 for loss in losses)
    assert losses[-1] < losses[0], losses
    assert losses[-1] < 0.8 * losses[0], losses  # four examples seen five times at 1e-3: it learns them
    summary = outcome.result.to_camel_dict()
    assert (summary["steps"], summary["epochs"], summary["examples"], summary["method"]) == (5, 5, 4, "lora")
    assert summary["firstLoss"] == pytest.approx(losses[0], abs=1e-4)
    assert summary["finalLoss"] == pytest.approx(losses[-1], abs=1e-4)
    assert 0 < summary["trainableParameters"] < 10_000_000  # an adapter, not the 135M model


@pytest.mark.slow
def test_training_writes_a_peft_adapter_and_a_manifest(lora_run):
    manifest, workdir, _ = lora_run
    adapter = workdir / "train" / "adapter"
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "adapter_model.safetensors").stat().st_size > 0
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 16 and config["lora_alpha"] == 32
    assert config["base_model_name_or_path"] == "bundled://smollm2-135m-instruct"
    assert (adapter / "tokenizer_config.json").is_file()
    assert not (workdir / "train" / "merged").exists() and not (workdir / "train" / "model").exists()
    stage_manifest = json.loads((workdir / "train" / "record.json").read_text())
    assert stage_manifest["configHash"] == current_hash(validate_object(manifest).spec, workdir, "train")
    # checkpoints are scratch space: gone once the stage completed
    assert not any((workdir / ".checkpoints").glob("train-*"))


@pytest.mark.slow
def test_peft_loads_the_adapter_and_it_changes_the_model(lora_run):
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selfguide.engine.models import bundled_model_dir

    _, workdir, _ = lora_run
    adapter = workdir / "train" / "adapter"
    base_dir = bundled_model_dir("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    base = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    ids = prompt_ids(tokenizer)
    before = logits(base, ids)
    tuned = PeftModel.from_pretrained(base, adapter).eval()
    after = logits(tuned, ids)
    assert (after - before).abs().max() > 1e-2
    with tuned.disable_adapter():
        assert logits(tuned, ids) == pytest.approx(before, abs=1e-4)
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as handle:
        keys = list(handle.keys())
    assert keys and all("lora_" in k for k in keys)
    assert not any("embed_tokens" in k or "lm_head" in k for k in keys)  # no embedding layers saved


# -- a tiny random Llama ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from selfguide.engine.models import bundled_model_dir

    tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir("smollm2-135m-instruct"))
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    directory = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    assert tokenizer.chat_template
    return directory


@pytest.mark.slow
def test_full_fine_tuning_writes_a_loadable_model(tiny_model, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    workdir = training_workdir(tmp_path, EXAMPLES)
    outcome = run_train_stage(job(str(tiny_model), method="full", epochs=2, learningRate=1e-3, batchSize=2,
                                           maxLength=64), workdir)
    model_dir = workdir / "train" / "model"
    assert (model_dir / "config.json").is_file()
    assert not (workdir / "train" / "adapter").exists()
    tuned = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = prompt_ids(tokenizer)
    assert not torch.allclose(logits(tuned, ids), logits(base, ids), atol=1e-4)
    assert outcome.result.method == "full" and outcome.result.steps == 4
    # full fine-tuning trains every parameter
    assert outcome.result.trainable_parameters == sum(p.numel() for p in base.parameters())


@pytest.mark.slow
def test_merge_adapter_writes_the_merged_model(tiny_model, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    workdir = training_workdir(tmp_path, EXAMPLES)
    run_train_stage(job(str(tiny_model), epochs=2, learningRate=1e-2, batchSize=2, maxLength=64,
                                  mergeAdapter=True), workdir)
    merged_dir = workdir / "train" / "merged"
    assert (merged_dir / "config.json").is_file() and (workdir / "train" / "adapter").is_dir()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    assert not any("lora" in name for name, _ in merged.named_parameters())
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    ids = prompt_ids(tokenizer)
    base = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    base_logits = logits(base, ids)
    adapted = PeftModel.from_pretrained(base, workdir / "train" / "adapter").eval()
    adapter_logits = logits(adapted, ids)
    assert (adapter_logits - base_logits).abs().max() > 1e-4  # the adapter does something
    assert logits(merged, ids) == pytest.approx(adapter_logits, abs=1e-4)  # and merging keeps exactly that


UNEVEN = [{"input": "Works great.", "output": "positive"},
          {"input": "Broke.", "output": "negative, and the seller never answered a single one of my messages"},
          {"input": "Lovely colours and very sturdy, I would buy it again.", "output": "positive"},
          {"input": "Arrived scratched.", "output": "negative"}]


def test_accumulated_micro_batches_give_the_gradient_of_one_batch(tiny_model):
    """benchmarks/configs/micro-batches.yaml: 2 accumulated micro-batches of 2 give the gradient of one batch of
    4 on outputs of very different lengths, as the Trainer runs it with our collator (the loss is normalised by
    the output tokens of the whole accumulated batch, not averaged per micro-batch, which would weight the long
    output's tokens less). Compared as gradients: Adam's first steps follow their signs, so trained weights
    would differ by float noise alone."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    from selfguide.engine.trainer import PadCollator, encode_example, lora_config
    from selfguide.spec import Example, TaskSpec, TrainingSpec

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    task = TaskSpec.model_validate(sentiment_manifest()["spec"]["task"])
    data = [encode_example(tokenizer, task, Example.model_validate(e), 64, []) for e in UNEVEN]
    collator = PadCollator(tokenizer.pad_token_id, output_logits_only=True)
    no_dropout = TrainingSpec.model_validate({"lora": {"dropout": 0.0}})  # dropout masks differ per forward
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model), lora_config(no_dropout))

    def gradient(micro_batches: list[list[int]]) -> dict[str, torch.Tensor]:
        args = TrainingArguments(output_dir="unused", use_cpu=True, report_to=[], remove_unused_columns=False,
                                 gradient_accumulation_steps=len(micro_batches))
        trainer = Trainer(model=model, args=args, data_collator=collator)
        batches = [collator([data[i] for i in rows]) for rows in micro_batches]
        items = trainer._get_num_items_in_batch(batches, torch.device("cpu"))  # what its training loop passes
        model.zero_grad()
        for batch in batches:
            trainer.training_step(model, batch, items)
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}

    whole, micro = gradient([[0, 1, 2, 3]]), gradient([[0, 1], [2, 3]])
    first, second = gradient([[0, 1]]), gradient([[2, 3]])
    assert all(torch.allclose(whole[k], micro[k], rtol=1e-4, atol=1e-7) for k in whole)
    # the mean of per-micro-batch means, which the test must tell apart
    assert not all(torch.allclose(whole[k], (first[k] + second[k]) / 2, rtol=1e-4, atol=1e-7) for k in whole)


# -- crashes and bad input (the real command) ---------------------------------------------------------------

MANY = [{"input": f"Review number {i}: {'great, works well' if i % 2 else 'broken, very bad'}.",
         "output": "positive" if i % 2 else "negative"} for i in range(24)]
CRASH_TRAINING = {"epochs": 3, "learningRate": 1e-3, "batchSize": 2, "maxLength": 64}
STEPS_PER_EPOCH = 12


def checkpoints(workdir: Path) -> list[Path]:
    return sorted(workdir.glob(".checkpoints/train-*/checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))


def complete_checkpoint(workdir: Path) -> Path | None:
    found = checkpoints(workdir)
    return found[-1] if found and (found[-1] / "trainer_state.json").is_file() else None


@pytest.fixture(scope="module")
def crashed_training(tiny_model, tmp_path_factory):
    """`selfguide stage train` SIGKILLed right after it wrote its first complete per-epoch checkpoint."""
    root = tmp_path_factory.mktemp("crash")
    workdir = training_workdir(root / "work", MANY)
    spec_file = write_manifest(root / "job.yaml", job(str(tiny_model), **CRASH_TRAINING))
    proc = start_cli("stage", "train", "--spec", spec_file, "--workdir", workdir, log=root / "killed.log")
    checkpoint = wait_for(lambda: complete_checkpoint(workdir), proc, 300, "a complete checkpoint")
    kill(proc)
    assert checkpoints(workdir)[-1] == checkpoint, "raced: a newer checkpoint was being written at the kill"
    assert not (workdir / "train").exists()
    pristine = root / "pristine"
    shutil.copytree(workdir, pristine, symlinks=True)
    return spec_file, pristine, checkpoint.relative_to(workdir)


def crashed_copy(crashed: Path, tmp_path: Path) -> Path:
    """A fresh copy of the work directory as the crash left it."""
    workdir = tmp_path / "work"
    shutil.copytree(crashed, workdir, symlinks=True)
    return workdir


@pytest.mark.slow
def test_training_resumes_from_the_last_checkpoint_after_a_crash(crashed_training, tmp_path):
    spec_file, crashed, relative = crashed_training
    workdir = crashed_copy(crashed, tmp_path)
    checkpoint = workdir / relative
    resumed_from = int(checkpoint.name.split("-")[-1])
    assert resumed_from % STEPS_PER_EPOCH == 0 and resumed_from < 3 * STEPS_PER_EPOCH
    result = run_cli("stage", "train", "--spec", spec_file, "--workdir", workdir)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert f"resuming training from {checkpoint}" in result.stderr
    total = 3 * STEPS_PER_EPOCH
    assert json.loads(result.stdout.splitlines()[-1])["summary"]["steps"] == total
    # the resumed run continues the step count; its metrics hold the steps before the crash too
    assert [m["step"] for m in read_jsonl(workdir / "train" / "metrics.jsonl")] == list(range(1, total + 1))
    assert (workdir / "train" / "adapter" / "adapter_model.safetensors").is_file()
    assert not checkpoints(workdir) and not list(workdir.glob(".train.*"))


@pytest.mark.slow
def test_a_crash_while_a_checkpoint_is_written_does_not_wedge_training(crashed_training, tmp_path):
    """A SIGKILL between the creation of `checkpoint-N/` and its `trainer_state.json` (the Trainer writes
    weights, optimizer, RNG state and trainer state one after the other, in place) leaves an incomplete
    checkpoint; the next attempt must not try to resume from it (it should use the last complete one, or
    start over)."""
    spec_file, crashed, relative = crashed_training
    workdir = crashed_copy(crashed, tmp_path)
    source = workdir / relative
    partial = source.with_name(f"checkpoint-{int(source.name.split('-')[-1]) + STEPS_PER_EPOCH}")
    partial.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):  # save_model() ran, nothing else yet
        shutil.copy2(source / name, partial / name)
    result = run_cli("stage", "train", "--spec", spec_file, "--workdir", workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "train" / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_an_empty_training_set_is_a_permanent_failure(tmp_path):
    workdir = training_workdir(tmp_path / "work", [])
    spec_file = write_manifest(tmp_path / "job.yaml", job())
    termination = tmp_path / "termination-log"
    result = run_cli("stage", "train", "--spec", spec_file, "--workdir", workdir, timeout=300,
                     SELFGUIDE_TERMINATION_LOG=str(termination))
    assert result.returncode == 3, result.stderr[-3000:]
    assert "kept no examples" in result.stderr and "Traceback" not in result.stderr
    message = json.loads(termination.read_text())
    assert message["stage"] == "train" and message["ok"] is False and message["permanent"] is True
    assert not (workdir / "train").exists() and not list(workdir.glob(".train.*"))


def test_a_missing_training_set_is_a_permanent_error(tmp_path):
    from selfguide.contract.errors import PermanentError
    from selfguide.stages.train.stage import load_training_set

    with pytest.raises(PermanentError, match="run the generate stage first"):
        load_training_set(tmp_path)


@pytest.mark.slow
def test_stage_train_prints_only_its_json_summary_on_stdout(tiny_model, tmp_path):
    """Like `stage generate`, `stage train` answers with one JSON line on stdout (progress and logs go to
    stderr). Fails while the Trainer's ProgressCallback writes its `{'loss': ...}` dicts to stdout."""
    workdir = training_workdir(tmp_path / "work", EXAMPLES[:2])
    spec_file = write_manifest(tmp_path / "job.yaml", job(str(tiny_model), epochs=1, batchSize=2, maxLength=32))
    result = run_cli("stage", "train", "--spec", spec_file, "--workdir", workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 1, lines
    summary = json.loads(lines[0])
    assert summary["stage"] == "train" and summary["summary"]["steps"] == 1


def test_output_only_logits_give_the_same_loss_and_gradients(tiny_model):
    """The LM head runs only where an output token is predicted, yet loss and gradients match the full run."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selfguide.engine.trainer import PadCollator, encode_example, keeps_logits_by_position
    from selfguide.spec import Example, TaskSpec

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    assert keeps_logits_by_position(model)
    assert not keeps_logits_by_position(torch.nn.Linear(2, 2))
    task = TaskSpec.model_validate(sentiment_manifest()["spec"]["task"])
    batch = [encode_example(tokenizer, task, Example.model_validate(e), 256) for e in EXAMPLES]
    assert len({len(e.input_ids) for e in batch}) > 1  # padding is exercised
    outputs = sum(1 for e in batch for label in e.labels[1:] if label != -100)

    def loss_and_grads(output_logits_only: bool):
        model.zero_grad()
        result = model(**PadCollator(tokenizer.pad_token_id, output_logits_only)(batch))
        result.loss.backward()
        return result, [p.grad.clone() for p in model.parameters()]

    full, full_grads = loss_and_grads(False)
    only, only_grads = loss_and_grads(True)
    assert full.logits.shape[:2] == (len(batch), max(len(e.input_ids) for e in batch))
    width = max(len(e.input_ids) for e in batch)
    per_row = max(sum(label != -100 for label in e.labels[1:]) for e in batch)
    assert only.logits.shape[0] == len(batch) and per_row <= only.logits.shape[1] < width
    assert only.logits.shape[1] <= outputs
    assert only.loss.item() == pytest.approx(full.loss.item(), rel=1e-5)
    for a, b in zip(only_grads, full_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_gradient_checkpointing_keeps_fewer_activations_and_trains_the_same_model(tiny_model, tmp_path):
    """With it on, the layers' activations are recomputed in the backward pass instead of being saved for it;
    the losses and the stage's config hash stay the same."""
    import torch

    plain, checkpointed = (job(str(tiny_model), epochs=2, learningRate=1e-2, batchSize=2, maxLength=64, **extra)
                           for extra in ({}, {"gradientCheckpointing": True}))
    upstream = {"generate": "0123456789abcdef"}
    assert (stage_hash(validate_object(plain).spec, "train", upstream)
            == stage_hash(validate_object(checkpointed).spec, "train", upstream))
    saved_bytes, losses = [], []
    for name, manifest in (("plain", plain), ("checkpointed", checkpointed)):
        saved = [0]

        def pack(tensor, saved=saved):
            saved[0] += tensor.numel() * tensor.element_size()
            return tensor

        workdir = training_workdir(tmp_path / name, EXAMPLES)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            run_train_stage(manifest, workdir)
        saved_bytes.append(saved[0])
        losses.append([m["loss"] for m in read_jsonl(workdir / "train" / "metrics.jsonl")])
    # same data and seed: without checkpointing both runs would save exactly as much (the rest is the LM head's)
    assert saved_bytes[1] < 0.9 * saved_bytes[0], saved_bytes
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_a_checkpoint_and_the_next_attempt_resumes_from_it(tiny_model, tmp_path):
    """A pod stopped mid-epoch (Kueue suspension, preemption) loses at most the step in flight, not the epoch."""
    import re
    import signal

    workdir = training_workdir(tmp_path / "work", MANY)
    manifest = job(str(tiny_model), **CRASH_TRAINING)
    spec_file = write_manifest(tmp_path / "job.yaml", manifest)
    log = tmp_path / "terminated.log"
    proc = start_cli("stage", "train", "--spec", spec_file, "--workdir", workdir, log=log, TQDM_DISABLE="")
    wait_for(lambda: re.search(r" ([2-9]|10)/36 ", log.read_text(errors="replace")), proc, 300,
             "training to reach step 2 of the first epoch")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 1, log.read_text()[-3000:]  # retryable: the Job tries again
    checkpoint = complete_checkpoint(workdir)
    assert checkpoint is not None, log.read_text()[-3000:]
    stopped_at = int(checkpoint.name.split("-")[-1])
    assert 2 <= stopped_at < STEPS_PER_EPOCH, stopped_at  # mid-epoch, not the last epoch boundary
    result = run_cli("stage", "train", "--spec", spec_file, "--workdir", workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming training from {checkpoint}" in result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["summary"]["steps"] == 3 * STEPS_PER_EPOCH
    assert [m["step"] for m in read_jsonl(workdir / "train" / "metrics.jsonl")] == list(range(1, 37))
