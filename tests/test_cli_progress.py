"""`selfguide run`'s progress bars are drawn from the same StageProgress snapshots the operator puts in status."""

from __future__ import annotations

from selfguide.cli import progress_bar
from selfguide.contract.progress import ProgressTracker


def test_the_progress_bar_shows_the_trackers_percentage_and_counters(capsys, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    with progress_bar("train") as bar:
        tracker = ProgressTracker("train", [bar])
        tracker.update(0.5, step=5, steps_total=10, loss=0.75)
        tracker.finish()
    err = capsys.readouterr().err
    assert "train" in err and "50%" in err and "step 5/10, loss 0.750" in err and "100%" in err
