"""What a classification job's training did to the model's label distribution (issue 28 item 6).

    .venv/bin/python -m benchmarks.label_probabilities examples/sentiment-classification.yaml --workdir runs/demo

For a finished `selfguide run` (its `generate/train.jsonl` and LoRA adapter in `train/adapter`), scores every
label as the whole answer to the few-shot prompt (the prompt the model is trained and evaluated with), once with
the adapter off (the prompted base model) and once with it on (SELF-GUIDE), on the job's evaluation items and on
its training examples. Per system and item set it prints: the mean probability of each label (softmax over the
labels), how often each label is the argmax (what greedy decoding answers when it names a label) and its
accuracy, the same after batch calibration (each label's mean log-probability over the items subtracted), and
the mean loss (nats) of the gold label. One JSON line per row, then a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from selfguide.artifacts import read_jsonl
from selfguide.contract.layout import TRAIN_DATA, trained_model_dir
from selfguide.manifest import load_manifest
from selfguide.prompts import few_shot_messages
from selfguide.spec import Example, SelfGuideJobSpec
from selfguide.stages.backend import opened
from selfguide.stages.evaluate.stage import load_eval_set
from selfguide.stages.generate.labels import calibrate, decide, label_means

Row = dict[str, object]


def softmax(scores: Sequence[float]) -> list[float]:
    top = max(scores)
    weights = [math.exp(s - top) for s in scores]
    total = math.fsum(weights)
    return [w / total for w in weights]


def summarize(labels: list[str], table: list[dict[str, float]], gold: list[str]) -> Row:
    """The label distribution, argmax answers and gold-label loss of one system on one item set."""
    probabilities = [softmax([row[label] for label in labels]) for row in table]
    mean_probability = {label: round(math.fsum(p[i] for p in probabilities) / len(table), 3)
                        for i, label in enumerate(labels)}
    argmax = [decide(row).label for row in table]
    means = label_means(table)
    calibrated = [decide(calibrate(row, means)).label for row in table]
    loss = -math.fsum(math.log(p[labels.index(g)]) for p, g in zip(probabilities, gold) if g in labels) / len(gold)

    def accuracy(answers: list[str]) -> float:
        return round(100.0 * sum(a == g for a, g in zip(answers, gold)) / len(gold), 1)

    return {"items": len(table), "meanProbability": mean_probability,
            "argmax": dict(Counter(argmax).most_common()), "argmaxAccuracy": accuracy(argmax),
            "calibrated": dict(Counter(calibrated).most_common()), "calibratedAccuracy": accuracy(calibrated),
            "goldLabelLoss": round(loss, 3), "gold": dict(Counter(gold).most_common())}


def label_scores(spec: SelfGuideJobSpec, workdir: Path, inputs: list[str]) -> dict[str, list[dict[str, float]]]:
    """Every label's log-probability for each input, adapter off ("fewShotPrompting") and on ("selfGuide")."""
    labels = list(spec.task.labels or [])
    with opened(spec, None, len(inputs) * 2, adapter=workdir / trained_model_dir(spec.training.method)) as backend:
        prompts = [backend.render_chat(few_shot_messages(spec.task, text)) for text in inputs]
        with backend.adapter_disabled():
            base = backend.score_answers(prompts, labels, desc="base model")
        tuned = backend.score_answers(prompts, labels, desc="fine-tuned model")
    return {name: [dict(zip(labels, row)) for row in rows] for name, rows in
            (("fewShotPrompting", base), ("selfGuide", tuned))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job", type=Path, help="the SelfGuideJob manifest the run used")
    parser.add_argument("--workdir", type=Path, required=True, help="the finished run's work directory")
    args = parser.parse_args(argv)
    spec = load_manifest(args.job).spec
    if spec.task.labels is None or spec.evaluation is None:
        parser.error("needs a classification job with an evaluation set")
    labels = list(spec.task.labels)
    evaluation = load_eval_set(spec.evaluation)
    training = [Example.model_validate(row) for row in read_jsonl(args.workdir / TRAIN_DATA)]
    sets = {"evaluation": ([e.input for e in evaluation], [e.output for e in evaluation]),
            "training": ([e.input for e in training], [e.output for e in training])}
    inputs = [text for texts, _ in sets.values() for text in texts]
    scores = label_scores(spec, args.workdir, inputs)
    rows: list[Row] = []
    start = 0
    for items, (texts, gold) in sets.items():
        for system, table in scores.items():
            if texts:
                rows.append({"items": items, "system": system} | summarize(labels, table[start:start + len(texts)], gold))
        start += len(texts)
    for row in rows:
        print(json.dumps(row))
    print("\n| items | system | mean P per label | argmax answers (accuracy) | calibrated answers (accuracy) "
          "| gold-label loss |\n| --- | --- | --- | --- | --- | ---: |")
    for row in rows:
        print(f"| {row['items']} ({row['gold']}) | {row['system']} | {row['meanProbability']} | {row['argmax']} "
              f"({row['argmaxAccuracy']}) | {row['calibrated']} ({row['calibratedAccuracy']}) | {row['goldLabelLoss']} |")


if __name__ == "__main__":
    main()
