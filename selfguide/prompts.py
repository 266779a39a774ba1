"""Prompt builders, faithful to SELF-GUIDE's reference templates (obvious typos fixed).

* Input generation: the "InputGenerator" prompt with every gold input ("high-quality") and 1-10 inputs
  from the pool ("low-quality", "N/A" while the pool is empty); classification prompts ask for an input
  whose expected output is a pseudo-label. The model answers in its own chat turn, which starts with
  `[input]="` so that one completion is one input.
* Annotation, training and evaluation share one few-shot chat prompt (the reference's chat template, in
  the model's own chat format): the instruction, an acknowledgement, one user/assistant turn per gold
  example, then the new input. Nothing is ever glued in for a missing value (the reference appends a
  literal "None" to every prompt).
"""

from __future__ import annotations

from collections.abc import Sequence

from selfguide.spec.task import Example, TaskSpec, TaskType

RULE = "-" * 92

INPUT_GENERATION_TEMPLATE = f"""As an InputGenerator, your task is to generate a new [input] based on the [instruction] and some example [input].

Try your best to ensure that the new [input] you generate is distinct from the provided [input] while maintaining a diverse, detailed, precise, comprehensive, and high-quality response.

Avoid generating a new [input] that is the same as the provided [input].
{RULE}
[instruction]

{{instruction}}
{RULE}
Here are some high-quality [input] for the [instruction]. These [input] can provide you with very strict format requirements. You should pay extreme attention to them!!!

Some high-quality [input]:

{{high_quality}}
{RULE}
These are some additional [input]. Their formats and contents may not be accurate. However, you may also refer to the content of them.

Some low-quality [input]:

{{low_quality}}
{RULE}
{{request}}"""

REQUEST = (
    "After seeing example inputs, generate a new [input]{condition}. Before generating the new [input], ensure "
    "that you strictly adhere to the rules of the new [instruction] and follow the format of high-quality "
    "[input].\n\nPrioritize the new [instruction] guidelines to maintain consistency and quality.\n\n"
    "Think twice before generating a new [input]. Only respond with the new [input] without any other "
    "information.{reminder}"
)

INPUT_RESPONSE_PREFIX = '[input]="'
"""The assistant's answer starts here, so the completion is the input itself."""
INPUT_STOP = ('"\n', '\n[input]', '\n[output]', '[output]=', "\n" + RULE[:8])
"""A completion ends where the quoted input closes or the model starts another block."""

EMPTY_POOL = "N/A"


def quoted_inputs(inputs: Sequence[str]) -> str:
    return "".join(f'[input]="{text}"\n\n' for text in inputs).rstrip("\n")


def input_generation_prompt(
    instruction: str, gold_inputs: Sequence[str], pool_inputs: Sequence[str], label: str | None = None
) -> str:
    """The user message asking for one new input; `label` conditions classification prompts."""
    condition = f" for which the expected [output] is {label}" if label is not None else ""
    reminder = f" Note that the expected [output] for the new [input] should be {label}." if label is not None else ""
    return INPUT_GENERATION_TEMPLATE.format(
        instruction=instruction,
        high_quality=quoted_inputs(gold_inputs),
        low_quality=quoted_inputs(pool_inputs) if pool_inputs else EMPTY_POOL,
        request=REQUEST.format(condition=condition, reminder=reminder),
    )


def extract_input(completion: str) -> str:
    """The generated input: the completion without the closing quote and surrounding whitespace."""
    text = completion.strip()
    if text.endswith('"'):
        text = text[:-1].rstrip()
    return text


def task_preamble(task: TaskSpec) -> str:
    what = "label" if task.type is TaskType.CLASSIFICATION else "output"
    return (
        f"The artificial intelligence assistant only needs to help annotate {what}. The task is: "
        f"{task.instruction}"
    )


def few_shot_messages(task: TaskSpec, new_input: str, examples: Sequence[Example] | None = None) -> list[dict[str, str]]:
    """The chat used to annotate, to train and to evaluate: task, gold turns, then the new input."""
    messages = [
        {"role": "user", "content": task_preamble(task)},
        {"role": "assistant", "content": "Okay."},
    ]
    for example in task.examples if examples is None else examples:
        messages.append({"role": "user", "content": f"[input] = {example.input}"})
        messages.append({"role": "assistant", "content": example.output})
    messages.append({"role": "user", "content": f"[input] = {new_input}"})
    return messages
