"""Fine-tuning on (input, output) pairs: LoRA by default, loss on the output tokens only.

Each example is trained as the exact few-shot chat prompt the model sees at inference (SELF-GUIDE trains on
its few-shot prompt plus the output), followed by the output and the end-of-turn token; every prompt
token is masked out of the loss. Checkpoints are written once per epoch outside the stage directory, so a
crashed run resumes from the last epoch instead of starting over.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
import shutil
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainerState,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_callback import PrinterCallback

from selfguide.artifacts import atomic_write_jsonl
from selfguide.contract import progress
from selfguide.contract.errors import RetryableError
from selfguide.contract.layout import ADAPTER_DIR, MERGED_DIR, METRICS_FILE, MODEL_DIR
from selfguide.engine.backends.chat import load_tokenizer, render_chat
from selfguide.engine.devices import resolve_device, resolve_dtype
from selfguide.engine.models import ModelLocation
from selfguide.prompts import few_shot_messages
from selfguide.spec import Example, ModelSpec, TaskSpec, TrainingMethod, TrainingSpec

log = logging.getLogger(__name__)

# peft reads transformers' deprecated `is_gradient_checkpointing`: noise in every run's output, not ours to fix
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]


def encode_example(
    tokenizer: PreTrainedTokenizerBase, task: TaskSpec, example: Example, max_length: int,
    demos: Sequence[Example] | None = None,
) -> Encoded:
    """Token ids of prompt + output + end-of-turn, with the prompt masked out of the labels.

    Too-long sequences lose tokens from the left (the oldest few-shot turns), never from the output."""
    prompt = render_chat(tokenizer, few_shot_messages(task, example.input, demos))
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(example.output.strip() + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    ids = (prompt_ids + answer_ids)[-max_length:]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + answer_ids)[-max_length:]
    return Encoded(ids, labels)


class PadCollator:
    """Right-pads a batch; padded positions are masked out of attention and loss.

    With `output_logits_only` the model projects onto the vocabulary only the positions that predict an
    output token in some row of the batch (`logits_to_keep` as position indices, their targets as
    `shift_labels`, ignored where that row predicts no output there). The prompt is most of every sequence, so
    this skips most of the LM head and its float32 logits; the loss is the same."""

    def __init__(self, pad_id: int, output_logits_only: bool = False) -> None:
        self.pad_id = pad_id
        self.output_logits_only = output_logits_only

    def __call__(self, batch: list[Encoded]) -> dict[str, torch.Tensor]:
        width = max(len(e.input_ids) for e in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, e in enumerate(batch):
            ids[row, : len(e.input_ids)] = torch.tensor(e.input_ids)
            labels[row, : len(e.labels)] = torch.tensor(e.labels)
            mask[row, : len(e.input_ids)] = 1
        encoded = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        if self.output_logits_only:
            shifted = torch.full_like(labels, IGNORE_INDEX)
            shifted[:, :-1] = labels[:, 1:]  # position i predicts token i + 1
            positions = (shifted != IGNORE_INDEX).any(0).nonzero().flatten()
            encoded |= {"logits_to_keep": positions, "shift_labels": shifted[:, positions]}
        return encoded


def keeps_logits_by_position(model: torch.nn.Module) -> bool:
    """Whether the model accepts `logits_to_keep` as position indices: transformers' own causal LMs do; remote
    code may not, and then every position gets logits."""
    return type(model).__module__.startswith("transformers.models.") and (
        "logits_to_keep" in inspect.signature(model.forward).parameters)


def lora_config(spec: TrainingSpec) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=spec.lora.r,
        lora_alpha=spec.lora.alpha,
        lora_dropout=spec.lora.dropout,
        # every linear layer of the transformer blocks (attention and MLP projections), never the head
        target_modules=list(spec.lora.target_modules) if spec.lora.target_modules else "all-linear",
        task_type="CAUSAL_LM",
    )


@dataclass(frozen=True)
class TrainingRun:
    """What one run of the trainer measured (the train stage reports it as a `TrainResult`)."""

    steps: int
    epochs: int
    examples: int
    losses: list[float]
    tokens: int
    seconds: float
    trainable_parameters: int
    processes: int

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def train(
    location: ModelLocation,
    model_spec: ModelSpec,
    task: TaskSpec,
    spec: TrainingSpec,
    examples: Sequence[Example],
    out_dir: Path,
    checkpoint_dir: Path,
    base_model_name: str,
) -> TrainingRun | None:
    """Fine-tune and write the adapter (or the full model) and per-step metrics into `out_dir`.

    Under torch.distributed.run every rank trains its shard of each batch; only rank 0 writes and returns
    a result (the others return None)."""
    set_seed(spec.seed)
    device = resolve_device()
    tokenizer = load_tokenizer(location, model_spec.trust_remote_code)
    tokenizer.padding_side = "right"
    dtype = resolve_dtype(model_spec.dtype, device)
    model = AutoModelForCausalLM.from_pretrained(
        location.path, revision=location.revision, dtype=dtype, trust_remote_code=model_spec.trust_remote_code
    )
    output_logits_only = keeps_logits_by_position(model)
    if spec.method is TrainingMethod.LORA:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(spec))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # an example never demonstrates itself (matters when training on the gold examples themselves)
    dataset = [encode_example(tokenizer, task, e, spec.max_length, [d for d in task.examples if d != e])
               for e in examples]
    tokens = sum(len(e.input_ids) for e in dataset) * spec.epochs  # every rank sees its shard; this is the total
    args = TrainingArguments(
        output_dir=str(checkpoint_dir),
        num_train_epochs=spec.epochs,
        per_device_train_batch_size=spec.batch_size,
        gradient_accumulation_steps=spec.gradient_accumulation_steps,
        gradient_checkpointing=spec.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},  # works with frozen inputs (LoRA)
        learning_rate=spec.learning_rate,
        warmup_steps=round(spec.warmup_ratio * _total_steps(len(dataset), spec)),  # no lr-0 step on tiny runs
        weight_decay=spec.weight_decay,
        lr_scheduler_type="linear",
        logging_steps=1,
        save_strategy="epoch",
        save_total_limit=1,
        seed=spec.seed,
        bf16=dtype is torch.bfloat16,
        fp16=dtype is torch.float16 and spec.method is TrainingMethod.LORA,
        use_cpu=device.type == "cpu",
        ddp_backend="gloo" if device.type == "cpu" and _world_size() > 1 else None,
        ddp_find_unused_parameters=False,
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    collator = PadCollator(tokenizer.pad_token_id, output_logits_only)
    stop = SaveOnTerminate()
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                      callbacks=[StderrProgress(), stop])
    trainer.remove_callback(PrinterCallback)  # it prints every log to stdout, which carries the stage's JSON
    resume = _last_checkpoint(checkpoint_dir)
    if resume:
        log.info("resuming training from %s", resume)
    with stop.armed():
        output = trainer.train(resume_from_checkpoint=resume)
    if stop.requested:
        raise RetryableError(f"training stopped by SIGTERM at step {trainer.state.global_step}; checkpoint saved, "
                             "the next attempt resumes from it")
    if not trainer.is_world_process_zero():
        return None
    history = [h for h in trainer.state.log_history if "loss" in h]
    atomic_write_jsonl(out_dir / METRICS_FILE, (
        {"step": h["step"], "epoch": round(h["epoch"], 4), "loss": h["loss"],
         "learningRate": h.get("learning_rate"), "gradNorm": h.get("grad_norm")} for h in history
    ))
    _save(model, tokenizer, spec, out_dir, base_model_name)
    return TrainingRun(
        steps=trainer.state.global_step, epochs=spec.epochs, examples=len(dataset),
        losses=[h["loss"] for h in history], tokens=tokens, seconds=output.metrics.get("train_runtime", 0.0),
        trainable_parameters=trainable, processes=_world_size(),
    )


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _total_steps(examples: int, spec: TrainingSpec) -> int:
    per_epoch = math.ceil(math.ceil(examples / (spec.batch_size * _world_size())) / spec.gradient_accumulation_steps)
    return per_epoch * spec.epochs


def _last_checkpoint(directory: Path) -> str | None:
    """The newest complete checkpoint. The Trainer writes `trainer_state.json` last, so a folder without it
    was cut short by a crash: it is removed, never resumed from."""
    complete = []
    for path in directory.glob("checkpoint-*"):
        if (path / "trainer_state.json").is_file():
            complete.append(path)
        else:
            shutil.rmtree(path, ignore_errors=True)
    return str(max(complete, key=lambda p: int(p.name.split("-")[-1]))) if complete else None


class SaveOnTerminate(TrainerCallback):
    """On SIGTERM (a pod stopped: Kueue suspension, preemption, eviction), finish the current step, save a
    checkpoint and stop, so the next attempt resumes mid-epoch instead of from the last epoch. Only in a
    single process: ranks that saw the signal at different steps would wait for each other at the save."""

    def __init__(self) -> None:
        self.requested = False

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        """SIGTERM handled while training runs (in the main thread of a single process only)."""
        if _world_size() != 1 or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGTERM, self._terminate)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _terminate(self, signum: int, frame: Any) -> None:
        log.warning("SIGTERM: saving a checkpoint after the current step")
        self.requested = True

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: Any, **kwargs: Any) -> None:
        if self.requested:
            control.should_save = True
            control.should_training_stop = True


class StderrProgress(TrainerCallback):
    """A progress bar and per-step loss on stderr (stdout is reserved for the stage's summary)."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="training", unit="step",
                            file=sys.stderr, leave=False)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)
        if state.is_world_process_zero and state.max_steps:
            progress.current().update(state.global_step / state.max_steps, step=state.global_step,
                                      steps_total=state.max_steps)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: Any, logs: dict | None = None,
               **kwargs: Any) -> None:
        if self.bar is not None and logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{logs['loss']:.4f}")
        if state.is_world_process_zero and logs and "loss" in logs:
            progress.current().update(loss=round(float(logs["loss"]), 4))

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()


def _save(model: Any, tokenizer: PreTrainedTokenizerBase, spec: TrainingSpec, out_dir: Path, base: str) -> None:
    tokenizer.padding_side = "left"
    if spec.method is TrainingMethod.LORA:
        model.peft_config["default"].base_model_name_or_path = base
        model.save_pretrained(out_dir / ADAPTER_DIR, save_embedding_layers=False)
        tokenizer.save_pretrained(out_dir / ADAPTER_DIR)
        if spec.merge_adapter:
            merged = model.merge_and_unload()
            merged.save_pretrained(out_dir / MERGED_DIR)
            tokenizer.save_pretrained(out_dir / MERGED_DIR)
    else:
        model.save_pretrained(out_dir / MODEL_DIR)
        tokenizer.save_pretrained(out_dir / MODEL_DIR)
