"""`report.html`: the evaluation report as one self-contained page (inline CSS, plots embedded as data URIs, no
network), beside report.md. Sections: scores against every baseline (the quality gate, and any collapse or
annotator warning), the label counts (classification), the filter funnel,
the generated training examples with their votes or margins, the dropped candidates by reason, and every
evaluation example's predictions."""

from __future__ import annotations

import base64
from collections import defaultdict
from html import escape
from pathlib import Path
from typing import Any

from selfguide.artifacts import atomic_write_text
from selfguide.contract.evaluation_report import EvaluationReport
from selfguide.contract.filter_report import FilterReport
from selfguide.contract.layout import REPORT_HTML_FILE
from selfguide.spec import SelfGuideJobSpec

SYSTEM_NAMES = {
    "fewShotPrompting": "Few-shot prompting (base model)",
    "selfGuide": "SELF-GUIDE (fine-tuned)",
    "fewShotFinetuning": "Few-shot fine-tuning",
    "selfIcl": "Self-ICL",
}
MAX_ROWS = 500
"""Rows shown per table (the JSON artifacts hold everything)."""

STYLE = """
:root { --fg: #1d2330; --muted: #5f6b7a; --line: #e3e7ee; --accent: #1f77b4; --good: #2e7d32; --bad: #c62828; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); margin: 0;
       background: #f6f8fb; }
header { background: #1d2330; color: #fff; padding: 24px 40px; }
header h1 { margin: 0 0 4px; font-size: 24px; }
header p { margin: 0; color: #c5cbd6; }
nav { padding: 8px 40px; background: #fff; border-bottom: 1px solid var(--line); position: sticky; top: 0; }
nav a { margin-right: 18px; color: var(--accent); text-decoration: none; font-weight: 600; }
main { padding: 16px 40px 60px; max-width: 1280px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 18px 22px; margin: 18px 0; }
h2 { margin: 0 0 12px; font-size: 19px; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.bar { height: 12px; background: var(--accent); border-radius: 3px; min-width: 1px; }
.bar.kept { background: #2ca02c; }
.verdict { display: inline-block; padding: 4px 10px; border-radius: 14px; font-weight: 700; color: #fff; }
.verdict.pass { background: var(--good); } .verdict.fail { background: var(--bad); }
.right { color: var(--good); font-weight: 600; } .wrong { color: var(--bad); font-weight: 600; }
.muted { color: var(--muted); }
pre { white-space: pre-wrap; margin: 0; font: inherit; }
details { margin: 6px 0; } summary { cursor: pointer; font-weight: 600; }
img { max-width: 100%; border: 1px solid var(--line); border-radius: 6px; margin: 6px 12px 6px 0; }
"""


def _name(system: str) -> str:
    return SYSTEM_NAMES.get(system, system)


def _text(value: Any) -> str:
    return f"<pre>{escape(str(value))}</pre>"


def _bar(value: float, total: float, kind: str = "") -> str:
    width = 0.0 if total <= 0 else max(0.0, min(100.0, 100.0 * value / total))
    return f'<div class="bar {kind}" style="width:{width:.1f}%"></div>'


def _scores(report: EvaluationReport) -> str:
    rows = "".join(
        f"<tr><td>{escape(_name(name))}</td><td class=num>{score:.2f}</td><td style='width:50%'>{_bar(score, 100)}</td></tr>"
        for name, score in report.scores.items())
    gate = report.gate
    verdict = ""
    if gate is not None:
        css, word = ("pass", "passed") if gate.passed else ("fail", "failed")
        collapse = f" whatever the score, as the model collapsed ({escape(gate.collapse)})" if gate.collapse else ""
        verdict = (f'<p id="gate"><span class="verdict {css}">Quality gate {word}</span>{collapse} improvement '
                   f'{gate.improvement:+.2f} on {gate.items} items, {gate.confidence:.0%} interval '
                   f'[{gate.lower:+.2f}, {gate.upper:+.2f}] (its lower end must reach '
                   f'{gate.min_improvement:+.2f}): '
                   f'{"the adapter is published" if gate.passed else "the adapter is not published"}.</p>')
    warnings = "".join(f"<p class=wrong>Warning: {escape(message)}.</p>"
                       for message in (report.findings.messages() if report.findings else []))
    annotator = f'<p id="annotator">Annotator: {escape(report.annotator.line())}.</p>' if report.annotator else ""
    return (f'<section id="scores"><h2>Scores</h2>{verdict}'
            + (f'<div id="findings">{warnings}</div>' if warnings else "") +
            f'<p>Metric <b>{escape(report.metric.value)}</b> ({escape(report.metric_variant)}) on '
            f'{report.examples} evaluation examples. SELF-GUIDE minus few-shot prompting: '
            f'<b>{report.delta:+.2f}</b>.</p>{annotator}'
            f'<table><thead><tr><th>system</th><th class=num>score</th><th></th></tr></thead>'
            f'<tbody>{rows}</tbody></table></section>')


def _labels(report: EvaluationReport) -> str:
    """Classification: how often each label occurs in the gold outputs, the training set and each system's
    answers."""
    rows = report.label_rows()
    if not rows:
        return ""
    head = "".join(f"<th class=num>{escape(_name(s))}</th>" for s in report.scores)
    body = "".join(f"<tr><td>{escape(label)}</td>" + "".join(f"<td class=num>{n}</td>" for n in values) + "</tr>"
                   for label, values in rows)
    return (f'<section id="labels"><h2>Labels</h2><p class=muted>How often each label occurs: a model that gives one '
            f'answer to every input shows here.</p><table><thead><tr><th>label</th><th class=num>gold</th>'
            f'<th class=num>training set</th>{head}</tr></thead><tbody>{body}</tbody></table></section>')


def _funnel(funnel: FilterReport) -> str:
    labels = {"inputs": "input filters", "annotation": "annotation", "balance": "class balancing"}
    total = funnel.inputs.entered
    rows = [(f"<tr><td>generated inputs</td><td class=num>{total}</td><td class=num></td><td></td>"
             f"<td style='width:35%'>{_bar(total, total)}</td></tr>")]
    for key, step in funnel.steps():
        why = ", ".join(f"{escape(r)} {n}" for r, n in sorted(step.reasons().items(), key=lambda x: -x[1]))
        rows.append(f"<tr><td>after {labels[key]}</td><td class=num>{step.kept}</td>"
                    f"<td class=num>-{step.entered - step.kept}</td><td>{why}</td>"
                    f"<td>{_bar(step.kept, total, 'kept')}</td></tr>")
    missing = funnel.missing_labels or []
    note = (f"<p class=wrong>No training example of: {escape(', '.join(missing))}</p>" if missing else "")
    return (f'<section id="funnel"><h2>Filter funnel</h2>{note}<table><thead><tr><th>step</th>'
            f'<th class=num>remaining</th><th class=num>dropped</th><th>why</th><th></th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>'
            f'<p class=muted>{funnel.final} training examples from {total} generated inputs.</p></section>')


def _evidence(row: dict[str, Any]) -> str:
    """How sure the annotation was: the vote, or the likelihood margin."""
    if row.get("margin") is not None:
        return f"margin {row['margin']:.3f}"
    if row.get("validSamples"):
        return f"{row.get('votes', 0)}/{row['validSamples']} votes"
    return ""


def _examples(candidates: list[dict[str, Any]], generated: list[dict[str, Any]]) -> str:
    kept = [c for c in candidates if c.get("droppedAt") == "kept"] or [
        {"input": g["input"], "output": g["output"]} for g in generated]
    rows = "".join(f"<tr><td class=num>{i}</td><td>{_text(c['input'])}</td><td>{_text(c.get('output', ''))}</td>"
                   f"<td class=num>{escape(_evidence(c))}</td></tr>"
                   for i, c in enumerate(kept[:MAX_ROWS], start=1))
    more = f"<p class=muted>First {MAX_ROWS} of {len(kept)}.</p>" if len(kept) > MAX_ROWS else ""
    return (f'<section id="examples"><h2>Generated training examples ({len(kept)})</h2>{more}<table><thead><tr>'
            f'<th class=num>#</th><th>input</th><th>output</th><th class=num>votes / margin</th></tr></thead>'
            f'<tbody>{rows}</tbody></table></section>')


def _dropped(candidates: list[dict[str, Any]]) -> str:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for c in candidates:
        if c.get("droppedAt", "kept") != "kept":
            groups[(c["droppedAt"], c.get("filter") or "", c.get("reason") or "unspecified")].append(c)
    blocks = []
    for (step, name, reason), rows in sorted(groups.items(), key=lambda x: (-len(x[1]), x[0][2])):
        body = "".join(f"<tr><td>{_text(c['input'])}</td><td>{_text(c.get('output') or '')}</td>"
                       f"<td class=num>{escape(_evidence(c))}</td></tr>" for c in rows[:MAX_ROWS])
        blocks.append(f'<details class="reason" data-reason="{escape(reason)}"><summary>{escape(reason)} '
                      f'<span class=muted>({len(rows)}; step {escape(step)}, filter {escape(name or "-")})</span>'
                      f'</summary><table><thead><tr><th>input</th><th>output</th><th class=num>votes / margin</th>'
                      f'</tr></thead><tbody>{body}</tbody></table></details>')
    total = sum(len(rows) for rows in groups.values())
    return (f'<section id="dropped"><h2>Dropped candidates ({total})</h2>'
            f'{"".join(blocks) or "<p class=muted>None.</p>"}</section>')


def _predictions(report: EvaluationReport) -> str:
    systems = list(report.scores)
    head = "".join(f"<th>{escape(_name(s))}</th>" for s in systems)
    rows = []
    for i, row in enumerate(report.predictions[:MAX_ROWS], start=1):
        cells = []
        for s in systems:
            answer = row.answer(s)
            score = answer.score if answer else 0.0
            css = "right" if score >= 50 else "wrong"
            cells.append(f"<td>{_text(answer.answer if answer else '')}<span class={css}>{score:.0f}</span></td>")
        rows.append(f"<tr><td class=num>{i}</td><td>{_text(row.input)}</td><td>{_text(row.gold)}</td>"
                    f"{''.join(cells)}</tr>")
    return (f'<section id="predictions"><h2>Predictions ({len(report.predictions)})</h2><table><thead><tr>'
            f'<th class=num>#</th><th>input</th><th>gold</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
            f'</table></section>')


def _plots(plots: list[Path]) -> str:
    images = "".join(f'<img alt="{escape(p.stem)}" src="data:image/png;base64,'
                     f'{base64.b64encode(p.read_bytes()).decode()}">' for p in plots if p.is_file())
    return f'<section id="plots"><h2>Plots</h2>{images}</section>' if images else ""


def render_html(spec: SelfGuideJobSpec, report: EvaluationReport, generated: list[dict[str, Any]],
                funnel: FilterReport, candidates: list[dict[str, Any]], plots: list[Path]) -> str:
    """The whole page."""
    title = "SELF-GUIDE evaluation report"
    nav = "".join(f'<a href="#{id_}">{label}</a>' for id_, label in (
        ("scores", "Scores"), *([("labels", "Labels")] if report.labels else []), ("funnel", "Funnel"), ("examples", "Training examples"),
        ("dropped", "Dropped"), ("predictions", "Predictions"), ("plots", "Plots")))
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width, initial-scale=1'>"
            f"<title>{title}</title><style>{STYLE}</style></head><body>"
            f"<header><h1>{title}</h1><p>{escape(spec.task.type.value)} task: "
            f"{escape(spec.task.instruction)}</p><p>base model {escape(spec.model.name)}</p></header>"
            f"<nav>{nav}</nav><main>"
            + _scores(report) + _labels(report) + _funnel(funnel) + _examples(candidates, generated) + _dropped(candidates)
            + _predictions(report) + _plots(plots)
            + "</main></body></html>\n")


def write_html_report(spec: SelfGuideJobSpec, report: EvaluationReport, generated: list[dict[str, Any]],
                      funnel: FilterReport, candidates: list[dict[str, Any]], out_dir: Path,
                      plots: list[str]) -> Path:
    path = out_dir / REPORT_HTML_FILE
    atomic_write_text(path, render_html(spec, report, generated, funnel, candidates, [out_dir / p for p in plots]))
    return path
