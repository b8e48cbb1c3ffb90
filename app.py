"""mmgen explorer: generate images from text, watch them emerge step by step, and see them as codebook tokens.

Run with `make demo` (http://127.0.0.1:7860). Set MMGEN_MODEL to a model folder or Hub repo id to explore
another model, and the MMGEN_MAX_* variables to change what one visitor may ask (`mmgen/app/limits.py`,
docs/serving.md). This file only loads the pipeline (once, at start) and launches the app; the UI is the package
`mmgen/app/` (one module per tab), and `build_demo(pipe)` builds it, so tests can pass a tiny pipeline.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmgen.app import Limits, ModelLoading, build_demo, serve
from mmgen.app.compute import native_bf16
from mmgen.tokens import default_model

MAX_FILE_SIZE = "10mb"  # the default MMGEN_MAX_UPLOAD_MB; `serve` applies the Space's own
SERVER_NAME = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
# bf16 matmuls where the CPU has them natively: ~1.7x faster, same measured accuracy (see docs/speed.md).
# MMGEN_BF16=0 forces float32, MMGEN_BF16=1 forces bf16.
BF16 = os.environ.get("MMGEN_BF16", "auto")


def use_bf16() -> bool:
    return BF16 == "1" or (BF16 == "auto" and native_bf16())


def load_pipeline(model: str):
    """The pipeline (importing torch's and diffusers' model code takes seconds: app.py runs this in the
    background, while the page is already served)."""
    import torch

    from mmgen.pipeline import MMGenPipeline

    pipe = MMGenPipeline.from_pretrained(model)
    if use_bf16():
        pipe.set_autocast(torch.bfloat16)
    return pipe


def model_folder(model: str) -> str:
    """A local folder, or a Hub repo id's files (downloaded when not cached yet)."""
    if os.path.isdir(model):
        return model
    from huggingface_hub import snapshot_download

    return snapshot_download(model)


def model_card(model: str) -> Path | None:
    """The card of a local model folder, when it has one; None: the shipped model's."""
    card = Path(model) / "README.md"
    return card if card.is_file() else None


if __name__ == "__main__":
    folder = model_folder(default_model())  # MMGEN_MODEL, or the shipped assets/mmgen-base
    limits = Limits.from_env()  # MMGEN_MAX_STEPS, MMGEN_QUEUE_SIZE, ...: a bad value stops here, with a message
    name = os.environ.get("MMGEN_MODEL", "mmgen-base")
    loading = ModelLoading.start(folder, lambda: load_pipeline(folder), bf16=use_bf16())  # page first, model meanwhile
    demo = build_demo(loading, model_name=name, model_card=model_card(folder), limits=limits)
    serve(demo, limits, server_name=SERVER_NAME)  # bounded queue, capped requests, no raw errors for visitors
