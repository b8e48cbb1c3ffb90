"""Helpers shared by the training tests (imported by name: pytest puts tests/ on the path)."""

import json
import shutil
from pathlib import Path


def interrupt(out: Path, weights: str) -> None:
    """Make a finished run into `out` look as if it was killed after its last step, before saving: its trained
    model (`out/weights`) and its log's closing "done" record go; the checkpoints stay."""
    shutil.rmtree(Path(out) / weights)
    log = Path(out) / "train_log.jsonl"
    lines = log.read_text().splitlines()
    assert json.loads(lines[-1]).get("done")
    log.write_text("".join(line + "\n" for line in lines[:-1]))
