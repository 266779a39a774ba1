"""The paper's Self-ICL baseline: the base model prompted with the gold examples and as many of its own
generated examples as fit the prompt budget, instead of being fine-tuned on them.

One set of demonstrations serves every evaluation item (the most that fit next to the longest item), so all
prompts share the demonstrations as a prefix, which the engine computes once.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from selfguide.engine.backends.base import GenerationBackend
from selfguide.prompts import few_shot_messages
from selfguide.spec import EvalExample, Example, SelfGuideJobSpec


@dataclass(frozen=True)
class Demonstrations:
    examples: list[Example]
    """The gold examples, then the generated ones that fit."""
    generated: int
    """How many generated examples are among them."""
    prompt_tokens: int
    """The longest evaluation prompt with them, in tokens."""


def demonstrations(backend: GenerationBackend, spec: SelfGuideJobSpec, items: Sequence[EvalExample],
                   generated: Sequence[Example], budget: int) -> Demonstrations:
    """The gold examples followed by the most generated examples (in a seeded random order) with which the
    prompt of the longest evaluation item stays within `budget` tokens."""
    gold = list(spec.task.examples)
    pool = list(generated)
    random.Random(spec.generation.seed).shuffle(pool)
    longest = max(items, key=lambda item: backend.count_tokens(item.input))

    def tokens(k: int) -> int:
        return backend.count_tokens(backend.render_chat(few_shot_messages(spec.task, longest.input, gold + pool[:k])))

    low, high = 0, len(pool)  # invariant: k = low fits (or nothing does), k = high + 1 does not
    fitted = tokens(0)
    while low < high:
        middle = (low + high + 1) // 2
        if (needed := tokens(middle)) <= budget:
            low, fitted = middle, needed
        else:
            high = middle - 1
    return Demonstrations(gold + pool[:low], low, fitted)
