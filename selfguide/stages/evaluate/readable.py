"""The readable evaluation report (Markdown) and its plots (PNG)."""

from __future__ import annotations

from pathlib import Path

from selfguide.artifacts import atomic_write_text
from selfguide.contract.evaluation_report import EvaluationReport
from selfguide.contract.filter_report import FilterReport
from selfguide.spec import SelfGuideJobSpec
from selfguide.stages.evaluate.html import write_html_report

SYSTEM_NAMES = {
    "fewShotPrompting": "Few-shot prompting",
    "selfGuide": "SELF-GUIDE",
    "fewShotFinetuning": "Few-shot fine-tuning",
}


def funnel_steps(funnel: FilterReport) -> list[tuple[str, int]]:
    """(step, remaining) pairs of the generate stage's filter report."""
    steps = [("generated inputs", funnel.inputs.entered), ("after input filters", funnel.inputs.kept),
             ("after annotation vote", funnel.annotation.kept)]
    if funnel.balance is not None:
        steps.append(("after class balancing", funnel.balance.kept))
    return steps


def _plots(spec: SelfGuideJobSpec, report: EvaluationReport, generated: list[dict], funnel: FilterReport,
           out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, ax = plt.subplots(figsize=(5, 3.2))
    names = list(report.scores)
    ax.bar([SYSTEM_NAMES.get(n, n) for n in names], [report.scores[n] for n in names],
           color=["#9e9e9e", "#1f77b4", "#ff7f0e"][: len(names)])
    ax.set_ylabel(report.metric.value.replace("_", " "))
    ax.set_ylim(0, 100)
    ax.set_title(f"{report.examples} evaluation examples")
    fig.tight_layout()
    fig.savefig(out_dir / "scores.png", dpi=100)
    files.append("scores.png")

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, field, gold in (
        (axes[0], "input", [e.input for e in spec.task.examples]),
        (axes[1], "output", [e.output for e in spec.task.examples]),
    ):
        ax.hist([len(r[field]) for r in generated], bins=20, alpha=0.7, label="generated")
        for length in map(len, gold):
            ax.axvline(length, color="black", linestyle="--", linewidth=1)
        ax.set_xlabel(f"{field} length (characters); dashed: gold examples")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "lengths.png", dpi=100)
    files.append("lengths.png")

    steps = funnel_steps(funnel)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.barh([s for s, _ in steps][::-1], [n for _, n in steps][::-1], color="#2ca02c")
    ax.set_xlabel("examples")
    ax.set_title("Filter funnel")
    fig.tight_layout()
    fig.savefig(out_dir / "funnel.png", dpi=100)
    files.append("funnel.png")
    plt.close("all")
    return files


def write_readable_report(spec: SelfGuideJobSpec, report: EvaluationReport, generated: list[dict],
                          funnel: FilterReport, out_dir: Path, candidates: list[dict] | None = None) -> None:
    """report.md and its plots, and report.html (one self-contained page)."""
    plots = _plots(spec, report, generated, funnel, out_dir)
    write_html_report(spec, report, generated, funnel, candidates or [], out_dir, plots)
    lines = [
        "# SELF-GUIDE evaluation report", "",
        f"Metric: **{report.metric.value}** ({report.metric_variant}), {report.examples} examples.", "",
        "| system | score |", "| --- | ---: |",
        *(f"| {SYSTEM_NAMES.get(n, n)} | {s:.2f} |" for n, s in report.scores.items()),
        "", f"Delta (SELF-GUIDE - few-shot prompting): **{report.delta:+.2f}**", "",
        *([f"Quality gate: **{'passed' if report.gate.passed else 'failed'}** ({report.gate.message()})", ""]
          if report.gate else []),
        *([f"Annotator: {report.annotator.line()}.", ""] if report.annotator else []),
        *(line for message in (report.findings.messages() if report.findings else [])
          for line in (f"**Warning: {message}.**", "")),
        "The whole report, with every example and dropped candidate: [report.html](report.html)", "",
        *_label_table(report),
        "## Generated data", "",
        *(f"- {step}: {n}" for step, n in funnel_steps(funnel)), "",
        *(f"![{p}]({p})" for p in plots), "",
        "## Sample predictions", "",
        "| input | gold | few-shot | SELF-GUIDE |", "| --- | --- | --- | --- |",
    ]
    for row in report.predictions[:20]:
        cells = [row.input, row.gold, row.few_shot_prompting.answer, row.self_guide.answer]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    atomic_write_text(out_dir / "report.md", "\n".join(lines) + "\n")


def _label_table(report: EvaluationReport) -> list[str]:
    rows = report.label_rows()
    if not rows:
        return []
    head = ["label", "gold", "training set", *(SYSTEM_NAMES.get(n, n) for n in report.scores)]
    return ["## Labels", "", "| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1),
            *(f"| {_cell(label)} | " + " | ".join(map(str, values)) + " |" for label, values in rows), ""]


def _cell(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split()).replace("|", "\\|")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
