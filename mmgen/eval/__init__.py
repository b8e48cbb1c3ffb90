"""Evaluations: the shapes-v1 scene judge, the tokenizer's and the generator's evaluation commands."""

import json
from pathlib import Path


def write_results(results: dict, path: str | Path | None) -> None:
    """Write evaluation results as indented JSON (creating the folder); no-op without a path."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(results, indent=2))
        print(f"wrote {path}")
