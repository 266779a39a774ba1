"""Prompt texts (golden strings, from SELF-GUIDE's reference templates) and backend text helpers."""

from __future__ import annotations

import pytest

from selfguide.engine.backends.base import Completion, SamplingParams, cut_at_stop, select_best
from selfguide.prompts import INPUT_STOP, extract_input, few_shot_messages, input_generation_prompt
from selfguide.spec import TaskSpec

HEAD = """As an InputGenerator, your task is to generate a new [input] based on the [instruction] and some example [input].

Try your best to ensure that the new [input] you generate is distinct from the provided [input] while maintaining a diverse, detailed, precise, comprehensive, and high-quality response.

Avoid generating a new [input] that is the same as the provided [input].
--------------------------------------------------------------------------------------------
[instruction]

"""

GENERATION_PROMPT_EMPTY_POOL = HEAD + """Reverse the order of the words.
--------------------------------------------------------------------------------------------
Here are some high-quality [input] for the [instruction]. These [input] can provide you with very strict format requirements. You should pay extreme attention to them!!!

Some high-quality [input]:

[input]="red green blue"

[input]="cat dog"
--------------------------------------------------------------------------------------------
These are some additional [input]. Their formats and contents may not be accurate. However, you may also refer to the content of them.

Some low-quality [input]:

N/A
--------------------------------------------------------------------------------------------
After seeing example inputs, generate a new [input]. Before generating the new [input], ensure that you strictly adhere to the rules of the new [instruction] and follow the format of high-quality [input].

Prioritize the new [instruction] guidelines to maintain consistency and quality.

Think twice before generating a new [input]. Only respond with the new [input] without any other information."""

CLASSIFICATION_PROMPT_WITH_POOL = HEAD + """Is the review positive or negative?
--------------------------------------------------------------------------------------------
Here are some high-quality [input] for the [instruction]. These [input] can provide you with very strict format requirements. You should pay extreme attention to them!!!

Some high-quality [input]:

[input]="Great battery."
--------------------------------------------------------------------------------------------
These are some additional [input]. Their formats and contents may not be accurate. However, you may also refer to the content of them.

Some low-quality [input]:

[input]="Broke in a day."

[input]="Works fine."
--------------------------------------------------------------------------------------------
After seeing example inputs, generate a new [input] for which the expected [output] is negative. Before generating the new [input], ensure that you strictly adhere to the rules of the new [instruction] and follow the format of high-quality [input].

Prioritize the new [instruction] guidelines to maintain consistency and quality.

Think twice before generating a new [input]. Only respond with the new [input] without any other information. Note that the expected [output] for the new [input] should be negative."""


def test_generation_prompt_with_an_empty_pool():
    prompt = input_generation_prompt("Reverse the order of the words.", ["red green blue", "cat dog"], [])
    assert prompt == GENERATION_PROMPT_EMPTY_POOL
    assert prompt.count("N/A") == 1
    assert "expected [output]" not in prompt
    assert "None" not in prompt


def test_classification_prompt_with_a_pool_and_a_label():
    prompt = input_generation_prompt(
        "Is the review positive or negative?", ["Great battery."], ["Broke in a day.", "Works fine."], "negative")
    assert prompt == CLASSIFICATION_PROMPT_WITH_POOL
    assert "N/A" not in prompt
    assert "None" not in prompt
    assert prompt.count("negative") == 3  # the instruction, then the label sentence twice
    assert prompt.count("the expected [output] is negative") == 1
    assert prompt.count("should be negative.") == 1


def test_pool_only_replaces_na():
    with_pool = input_generation_prompt("Do it.", ["g"], ["p"])
    without = input_generation_prompt("Do it.", ["g"], [])
    assert with_pool == without.replace("N/A", '[input]="p"')


def test_braces_in_user_text_are_kept_verbatim():
    prompt = input_generation_prompt("Fill {x} in {0}", ['{"a": 1}'], ["{}"], "{label}")
    assert "Fill {x} in {0}" in prompt
    assert '[input]="{"a": 1}"' in prompt
    assert '[input]="{}"' in prompt
    assert "the expected [output] is {label}." in prompt


def test_few_shot_messages():
    task = TaskSpec.model_validate({
        "type": "classification",
        "instruction": "Is it positive?",
        "labels": ["yes", "no"],
        "examples": [{"input": "Great!", "output": "yes"}, {"input": "Awful.", "output": "no"}],
    })
    assert few_shot_messages(task, "Fine, I guess.") == [
        {"role": "user", "content": "The artificial intelligence assistant only needs to help annotate label. The task is: Is it positive?"},
        {"role": "assistant", "content": "Okay."},
        {"role": "user", "content": "[input] = Great!"},
        {"role": "assistant", "content": "yes"},
        {"role": "user", "content": "[input] = Awful."},
        {"role": "assistant", "content": "no"},
        {"role": "user", "content": "[input] = Fine, I guess."},
    ]


def test_few_shot_messages_for_generation_with_explicit_examples():
    task = TaskSpec.model_validate({
        "instruction": "Reverse the words.",
        "examples": [{"input": "a b", "output": "b a"}],
    })
    messages = few_shot_messages(task, "c d", examples=[])
    assert messages == [
        {"role": "user", "content": "The artificial intelligence assistant only needs to help annotate output. The task is: Reverse the words."},
        {"role": "assistant", "content": "Okay."},
        {"role": "user", "content": "[input] = c d"},
    ]


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("A new input", "A new input"),
        ('A new input"', "A new input"),
        ('  A new input  "  \n', "A new input"),
        ('He said "hi" twice', 'He said "hi" twice'),
        ("", ""),
        ('"', ""),
    ],
)
def test_extract_input(completion, expected):
    assert extract_input(completion) == expected


@pytest.mark.parametrize(
    ("text", "stop", "expected"),
    [
        ('new input"\nmore', INPUT_STOP, "new input"),
        ("one\n[input]two", INPUT_STOP, "one"),
        ("one [output]=x", INPUT_STOP, "one "),
        ("b then a", ("a", "b"), ""),  # the earliest stop wins, whatever its position in the list
        ("xx STOP yy stop", ("stop", "STOP"), "xx "),
        ("no stop here", ("zz",), "no stop here"),
        ("anything", (), "anything"),
        ("", ("a",), ""),
    ],
)
def test_cut_at_stop(text, stop, expected):
    assert cut_at_stop(text, stop) == expected


def test_select_best_by_logprob_stable_on_ties():
    a, b, c, d = (Completion("a", -2.0), Completion("b", -0.5), Completion("c", -2.0), Completion("d", -1.0))
    assert select_best([a, b, c, d], 3) == [b, d, a]
    assert select_best([c, a], 1) == [c]
    assert select_best([a, b], 5) == [b, a]
    assert select_best([], 2) == []


def test_sampling_params_samples_and_greedy():
    assert SamplingParams(n=10, best_of=20).samples == 20
    assert SamplingParams(n=4).samples == 4
    assert SamplingParams(n=4, best_of=2).samples == 4
    assert SamplingParams(temperature=0.0).greedy
    assert not SamplingParams(temperature=0.2).greedy
