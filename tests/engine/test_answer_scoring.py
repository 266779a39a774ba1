"""Label likelihood on the real bundled model: `score_answers` (one prefill per prompt, the shared prefix once,
the answers batched over copies of the cache) equals the log-probability computed the plain way, from one
forward pass over the whole prompt and answer."""

from __future__ import annotations

import pytest

from selfguide.prompts import few_shot_messages
from selfguide.spec import TaskSpec

TASK = TaskSpec.model_validate({
    "type": "classification", "instruction": "Is the review positive or negative?",
    "labels": ["positive", "negative"],
    "examples": [{"input": "I love it, works great.", "output": "positive"},
                 {"input": "Terrible, broke in a day.", "output": "negative"}],
})
INPUTS = ["Best purchase I made this year, highly recommended!", "Awful. It stopped working and smells bad.",
          "ok"]
ANSWERS = ["positive", "negative", "not sure at all"]


@pytest.fixture(scope="module")
def backend():
    from selfguide.engine.backends import open_backend
    from selfguide.spec import ModelSpec
    from selfguide.spec.generation import Backend, GenerationSpec

    loaded = open_backend(ModelSpec(), GenerationSpec(backend=Backend.TRANSFORMERS), batch_size=8)
    yield loaded
    loaded.close()


def plain_score(backend, prompt: str, answer: str) -> float:
    import torch

    from selfguide.engine.backends.chat import answer_ids, encode, end_of_turn

    ids = encode(backend.tokenizer, prompt)
    tail = answer_ids(backend.tokenizer, answer, end_of_turn(backend.tokenizer, backend._eos))
    with torch.inference_mode():
        logits = backend.model(input_ids=torch.tensor([ids + tail])).logits[0].float().log_softmax(-1)
    return float(sum(logits[len(ids) - 1 + i, token] for i, token in enumerate(tail)))


@pytest.mark.slow
def test_scores_equal_the_plain_computation_with_and_without_a_shared_prefix(backend):
    prompts = [backend.render_chat(few_shot_messages(TASK, text)) for text in INPUTS]
    shared = backend.score_answers(prompts, ANSWERS)  # the few-shot block is a shared prefix here
    alone = [backend.score_answers([prompt], ANSWERS)[0] for prompt in prompts]  # no shared prefix
    for prompt, with_prefix, without in zip(prompts, shared, alone):
        expected = [plain_score(backend, prompt, answer) for answer in ANSWERS]
        assert with_prefix == pytest.approx(expected, abs=2e-3)
        assert without == pytest.approx(expected, abs=2e-3)
    assert all(row[2] < min(row[:2]) for row in shared)  # a long non-label answer is far less likely


@pytest.mark.slow
def test_the_negative_review_leans_further_to_negative(backend):
    """The 135M model answers "positive" to almost anything (the prior calibration removes), but the gap
    between the labels still moves the right way between an obviously positive and negative review."""
    prompts = [backend.render_chat(few_shot_messages(TASK, text)) for text in INPUTS[:2]]
    on_positive, on_negative = backend.score_answers(prompts, ["positive", "negative"])
    assert on_negative[1] - on_negative[0] > on_positive[1] - on_positive[0]
