"""Evaluations: the shapes-v1 scene judge, the tokenizer's and the generator's evaluation commands.

- `judge`: reads a shapes-v1 scene back from pixels (`verifier`: its strict reading's learned shape check, trained by
  `train_verifier` on `verifier_data`'s drawings; `eval_judge`: `mmgen eval-judge`);
- `eval_tokenizer`: `mmgen eval-tokenizer`, the VQ-VAE on held-out scenes and photos;
- `eval_generator`: `mmgen eval-generator`, the text-to-image pipeline, held-out or sweeping settings, built from
  `prompts` (the prompt sets), `accuracy` (generate and score a draw of prompts), `scoring` (a read scene against
  its prompt), `report` (targets and tables), `sweep` (settings on tuning prompts) and `ceiling` (the tokenizer
  ceiling);
- `eval_caption`, `eval_attention`: `mmgen eval-caption` (image -> text) and `eval-attention` (where each word looks);
- `eval_retrieval`: `mmgen eval-retrieval`, prompt fidelity of a model of one's own images by retrieval
  (`retrieval`: the gallery and the ranking).
"""

import argparse
import json
from pathlib import Path


def count(minimum: int):
    """An argparse type for a number of prompts, scenes or steps: a whole number of at least `minimum`, else
    argparse's one-line error (`--n 0` would reach numpy as a mean of nothing)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def write_results(results: dict, path: str | Path | None) -> None:
    """Write evaluation results as indented JSON (creating the folder); no-op without a path."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(results, indent=2))
        print(f"wrote {path}")
