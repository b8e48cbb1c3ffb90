"""The end of a model card: how to load the model, and its links back to mmgen's repository (README, docs/).

The card's text links the repository as `REPO` ("../..": its root seen from assets/<model>/, where the shipped
cards live); `with_repo_links` rewrites those links for a folder elsewhere in the repository (runs/a/b: "../../..")
and drops them for one outside it (a user's folder, later uploaded to the Hub), where no relative link resolves.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .model_paths import ROOT

REPO = "../.."  # the repository's root, seen from assets/<model>/


def with_repo_links(text: str, folder: Path) -> str:
    """`text` with its REPO links made right for a card in `folder`: relative inside the repository, plain text
    ("mmgen", "docs/x.md in mmgen's repository") outside it."""
    here = folder.resolve()
    if ROOT in here.parents:
        return text.replace(f"]({REPO}/", f"]({Path(os.path.relpath(ROOT, here)).as_posix()}/")
    text = text.replace(f"[mmgen]({REPO}/README.md)", "mmgen")
    return re.sub(rf"\[([^\]]+)\]\({re.escape(REPO)}/[^)]+\)", r"\1 (in mmgen's repository)", text)


DIFFUSERS_ALONE = f"""
Plain diffusers (`DiffusionPipeline.from_pretrained`) cannot load this folder: its `model_index.json` names mmgen's
classes. `mmgen export-hub FOLDER --out DIR` writes a copy that diffusers loads without mmgen, with
`trust_remote_code=True` ([docs/tokenizers.md]({REPO}/docs/tokenizers.md)).
"""


SHAPES_PROMPT = "a large red circle in the top left on a white background"


def how_to_load(out: str | Path, side: int, prompt: str | None = None) -> str:
    """The section that loads the model in `out`, whose images are `side` pixels square; its example draws
    `prompt` (default: a shapes-v1 caption)."""
    prompt = prompt or SHAPES_PROMPT
    file = "circle.png" if prompt == SHAPES_PROMPT else "image.png"
    path = Path(out).as_posix()
    if not (Path(out) / "model_index.json").exists():  # a tokenizer alone, before any generator is published
        code = f"""from mmgen import VQVAE

vq = VQVAE.from_pretrained("{path}", subfolder="vqvae")"""
    else:
        code = f"""import torch
from mmgen import VQVAE, MMGenPipeline

pipe = MMGenPipeline.from_pretrained("{path}")
out = pipe({json.dumps(prompt, ensure_ascii=False)}, generator=torch.Generator().manual_seed(0))
out.images[0].save("{file}")  # {side}x{side} PIL image; out.tokens[0] is its 16x16 token grid
vq = VQVAE.from_pretrained("{path}", subfolder="vqvae")  # the tokenizer alone"""
    return f"""## How to load

Install [mmgen]({REPO}/README.md) from its repository (`pip install -e .` in a checkout: the model classes live in
`mmgen.models`; the PyPI package named `mmgen` is another project, OpenMMLab's MMGeneration), then:

```python
{code}
```
{DIFFUSERS_ALONE if (Path(out) / "model_index.json").exists() else ""}"""
