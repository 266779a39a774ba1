"""report.html, opened in a real headless Chromium: every section renders with its content, the plots decode,
nothing is fetched from elsewhere, and text from the model is shown as text (never run as HTML)."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfguide.contract.evaluation_report import EvaluationReport
from selfguide.contract.filter_report import FilterReport
from selfguide.contract.findings import findings
from selfguide.contract.results import judge
from selfguide.spec import SelfGuideJobSpec
from selfguide.stages.evaluate.readable import write_readable_report
from tests import manifests
from tests.harness.browser import Browser

pytestmark = pytest.mark.browser

HOSTILE = "<img src=x onerror=\"window.pwned=1\"><script>window.pwned=1</script> & more"
REPORT = EvaluationReport.model_validate({
    "metric": "exact_match", "metricVariant": "exact match after SNI normalisation", "examples": 3,
    "scores": {"fewShotPrompting": 33.33, "selfGuide": 66.67, "fewShotFinetuning": 0.0},
    "baseline": 33.33, "finetuned": 66.67, "delta": 33.34,
    "gate": {"passed": True, "minImprovement": 5.0, "baseline": 33.33, "finetuned": 66.67, "improvement": 33.34,
             "lower": 10.0, "upper": 60.0, "confidence": 0.95, "items": 3},
    "predictions": [
        {"input": "Love it.", "gold": "positive", "fewShotPrompting": {"answer": "negative", "score": 0.0},
         "selfGuide": {"answer": "positive", "score": 100.0}, "fewShotFinetuning": {"answer": "", "score": 0.0}},
        {"input": HOSTILE, "gold": "negative", "fewShotPrompting": {"answer": "negative", "score": 100.0},
         "selfGuide": {"answer": "negative", "score": 100.0}, "fewShotFinetuning": {"answer": "x", "score": 0.0}},
        {"input": "Meh.", "gold": "negative", "fewShotPrompting": {"answer": "positive", "score": 0.0},
         "selfGuide": {"answer": "positive", "score": 0.0}, "fewShotFinetuning": {"answer": "x", "score": 0.0}},
    ],
    "labels": {"gold": {"negative": 2, "positive": 1}, "training": {"positive": 1, "negative": 1},
               "answers": {"fewShotPrompting": {"negative": 2, "positive": 1},
                           "selfGuide": {"positive": 2, "negative": 1}, "fewShotFinetuning": {}}},
    "annotator": {"items": 3, "method": "likelihood", "calibration": "batch", "accuracy": 33.3, "coverage": 100.0,
                  "majorityShare": 66.7},
    "findings": {"annotator": {"accuracy": 33.3, "majorityShare": 66.7, "items": 3}},
})
CANDIDATES = [
    {"input": "Great phone.", "round": 0, "output": "positive", "droppedAt": "kept", "votes": 4, "validSamples": 5},
    {"input": "Terrible.", "round": 0, "output": "negative", "droppedAt": "kept", "margin": 1.25},
    {"input": "Great phone.", "round": 1, "droppedAt": "input", "filter": "duplicates", "reason": "duplicate"},
    {"input": "x" * 300, "round": 1, "droppedAt": "input", "filter": "length", "reason": "too_long"},
    {"input": "Hmm.", "round": 1, "output": "positive", "droppedAt": "annotation", "filter": "vote",
     "reason": "no_agreement", "votes": 2, "validSamples": 5},
    {"input": "Okay.", "round": 2, "droppedAt": "input", "filter": "duplicates", "reason": "duplicate"},
]
FUNNEL = FilterReport.model_validate({
    "prompts": {"built": 3, "trimmed": 0, "skipped": {}},
    "inputs": {"in": 6, "kept": 3, "dropped": {"duplicates": {"duplicate": 2}, "length": {"too_long": 1}}},
    "annotation": {"in": 3, "kept": 2, "dropped": {"vote": {"no_agreement": 1}}, "samplesDropped": {},
                   "method": "vote"},
    "final": 2,
})
GENERATED = [{"input": "Great phone.", "output": "positive"}, {"input": "Terrible.", "output": "negative"}]

PROBE = """(() => {
  const box = el => el.getBoundingClientRect();
  const section = id => {
    const el = document.getElementById(id);
    return el && {height: box(el).height, text: el.innerText, rows: el.querySelectorAll(':scope > table > tbody > tr').length};
  };
  const details = [...document.querySelectorAll('#dropped details')];
  const closed = details.map(d => d.querySelector('table').checkVisibility());
  details.forEach(d => d.open = true);
  return {
    title: document.title,
    sections: Object.fromEntries(['scores', 'labels', 'funnel', 'examples', 'dropped', 'predictions', 'plots']
                                 .map(id => [id, section(id)])),
    images: [...document.images].map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth})),
    external: [...document.querySelectorAll('[src], [href], link, script')]
                .map(e => e.getAttribute('src') || e.getAttribute('href') || e.tagName)
                .filter(u => !u.startsWith('data:') && !u.startsWith('#')),
    bars: [...document.querySelectorAll('#scores tbody .bar')].map(b => box(b).width),
    gate: (document.getElementById('gate') || {}).innerText,
    findings: (document.getElementById('findings') || {}).innerText,
    reasons: details.map(d => [d.dataset.reason, d.querySelectorAll('tbody tr').length]),
    closed, opened: details.map(d => d.querySelector('table').checkVisibility()),
    pwned: window.pwned === 1,
    hostile: [...document.querySelectorAll('#predictions pre')].some(p => p.innerText.includes('<script>')),
  };
})()"""


@pytest.fixture(scope="module")
def browser():
    chromium = Browser()
    yield chromium
    chromium.close()


def write_report(out: Path) -> Path:
    spec = SelfGuideJobSpec.model_validate(manifests.classification()["spec"])
    write_readable_report(spec, REPORT, GENERATED, FUNNEL, out, CANDIDATES)
    return out / "report.html"


def test_the_html_report_renders_every_section_in_a_real_browser(browser, tmp_path):
    page = browser.evaluate(write_report(tmp_path).as_uri(), PROBE)
    assert page["title"] == "SELF-GUIDE evaluation report"
    sections = page["sections"]
    assert all(sections[s] and sections[s]["height"] > 40 for s in sections), sections
    scores = sections["scores"]
    assert scores["rows"] == 3 and "Few-shot prompting (base model)" in scores["text"] and "66.67" in scores["text"]
    assert "Quality gate passed" in page["gate"] and "+33.34" in page["gate"]
    assert "95% interval [+10.00, +60.00]" in page["gate"]
    assert "self-training cannot help: the annotator labels 33.3% of 3 gold inputs right" in page["findings"]
    assert sections["labels"]["rows"] == 3 and "(no label)" in sections["labels"]["text"]
    base, self_guide, finetune = page["bars"]
    assert self_guide == pytest.approx(2 * base, rel=0.05) and finetune <= 1.5  # bars drawn to scale
    assert sections["funnel"]["rows"] == 3 and "duplicate 2" in sections["funnel"]["text"]
    assert "2 training examples from 6 generated inputs" in sections["funnel"]["text"]
    assert sections["examples"]["rows"] == 2 and "4/5 votes" in sections["examples"]["text"]
    assert "margin 1.250" in sections["examples"]["text"]
    assert page["reasons"] == [["duplicate", 2], ["no_agreement", 1], ["too_long", 1]]
    assert not any(page["closed"]) and all(page["opened"])  # collapsed until opened
    assert sections["predictions"]["rows"] == 3 and "SELF-GUIDE (fine-tuned)" in sections["predictions"]["text"]
    assert sorted(i["alt"] for i in page["images"]) == ["funnel", "lengths", "scores"]
    assert all(i["complete"] and i["width"] > 100 for i in page["images"]), page["images"]  # decoded PNGs
    assert page["external"] == []  # self-contained: the page fetches nothing
    assert page["hostile"] and not page["pwned"]  # model output is text, never markup


def test_the_markdown_report_links_the_html_one(tmp_path):
    write_report(tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert "[report.html](report.html)" in markdown and "Quality gate: **passed**" in markdown
    assert ("Annotator: the annotator (likelihood, batch calibration) labels 33.3% of 3 gold inputs right (it gives "
            "100.0% a label); always answering the majority class scores 66.7%.") in markdown


def test_a_collapse_is_named_in_both_reports_and_fails_the_gate(tmp_path):
    collapse = findings(["positive"] * 2, ["positive"] * 10, ["positive", "negative"] * 5)
    assert collapse is not None and collapse.collapse is not None
    gate = judge(0.0, [0.0] * 10, [100.0, 0.0] * 5, collapse=collapse.collapse)
    spec = SelfGuideJobSpec.model_validate(manifests.classification()["spec"])
    write_readable_report(spec, REPORT.model_copy(update={"findings": collapse, "gate": gate}), GENERATED, FUNNEL,
                          tmp_path, CANDIDATES)
    markdown, page = (tmp_path / "report.md").read_text(), (tmp_path / "report.html").read_text()
    assert "Quality gate: **failed** (quality gate failed whatever the score (one-label training set" in markdown
    assert "**Warning: collapsed classifier: SELF-GUIDE answers 'positive' to 10 of 10 evaluation items" in markdown
    assert "| label | gold | training set | Few-shot prompting | SELF-GUIDE | Few-shot fine-tuning |" in markdown
    assert "Quality gate failed</span> whatever the score, as the model collapsed" in page
    assert "the adapter is not published" in page and "Warning: one-label training set: 2 of 2" in page
