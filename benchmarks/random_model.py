"""A Llama model of a real size with random weights, saved once: speed does not depend on the weights."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from selfguide.engine.models import bundled_model_dir

SHAPES = {
    "7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
           "num_key_value_heads": 32},
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 4},
}


def random_llama(shape: str, directory: Path, dtype: torch.dtype = torch.bfloat16) -> tuple[Path, float]:
    """Write a random `shape` Llama (with the bundled model's tokenizer) to `directory` once; return it and
    the seconds spent creating it (0 when it already existed)."""
    if (directory / "config.json").is_file():
        return directory, 0.0
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir("smollm2-135m-instruct"))
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         **SHAPES[shape])  # type: ignore[arg-type]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)  # type: ignore[arg-type]  # transformers types `to` badly
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    del model
    return directory, time.perf_counter() - start
