"""The tokenizer side shared by both backends and training: loading, chat rendering, token counts."""

from __future__ import annotations

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from selfguide.engine.backends.base import Messages
from selfguide.engine.models import ModelLocation


def load_tokenizer(location: ModelLocation, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The model's tokenizer, set up for batched generation (left padding, a pad token)."""
    tokenizer = AutoTokenizer.from_pretrained(
        location.path, revision=location.revision, trust_remote_code=trust_remote_code
    )
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def render_chat(tokenizer: PreTrainedTokenizerBase, messages: Messages, response_prefix: str = "") -> str:
    """Apply the model's own chat template; models without one get a plain `role: content` layout."""
    if tokenizer.chat_template:
        text = str(tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True))
    else:
        text = "".join(f"{m['role'].upper()}: {m['content']}\n" for m in messages) + "ASSISTANT: "
    return text + response_prefix


def encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """The token ids of a rendered prompt, as generated from: no special tokens are added, since the chat
    template already wrote any BOS it wants (adding one would double it)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def answer_ids(tokenizer: PreTrainedTokenizerBase, answer: str, end_of_turn: int) -> list[int]:
    """The tokens of `answer` as the model's whole reply: its text, then the end of the turn."""
    return encode(tokenizer, answer) + [end_of_turn]


def end_of_turn(tokenizer: PreTrainedTokenizerBase, eos: int | list[int] | None) -> int:
    """The token that ends an assistant turn: the model's (first) end-of-sequence token."""
    if isinstance(eos, list):
        eos = eos[0] if eos else None
    if eos is None:
        eos = tokenizer.eos_token_id
    assert isinstance(eos, int), "the tokenizer has no end-of-sequence token"
    return eos


def count_tokens(tokenizer: PreTrainedTokenizerBase, text: str) -> int:
    return len(encode(tokenizer, text))


class ChatRendering:
    """`render_chat` and `count_tokens` of the backend protocol, for a backend that holds the model's tokenizer."""

    tokenizer: PreTrainedTokenizerBase

    def render_chat(self, messages: Messages, response_prefix: str = "") -> str:
        return render_chat(self.tokenizer, messages, response_prefix)

    def count_tokens(self, text: str) -> int:
        return count_tokens(self.tokenizer, text)
