"""mmgen explorer: generate images from text, watch them emerge step by step, and see them as codebook tokens.

Run with `make demo` (http://127.0.0.1:7860). It offers the shipped models, one page each: mmgen-base (shapes,
128 px), mmgen-base-64 (shapes, 64 px) and mmgen-emoji. Set MMGEN_MODEL to a model folder or Hub repo id to
explore that model alone, or MMGEN_MODELS to a comma-separated list (the first on the front page). The MMGEN_MAX_*
variables change what one visitor may ask (`mmgen/app/limits.py`, docs/serving.md). This file only loads the
pipelines (once, at start) and launches the app; the UI is the package `mmgen/app/` (one module per tab), and
`build_demo` builds it, so tests can pass a tiny pipeline.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    # Before torch loads: one OpenMP thread is every thread's default (loaders, gradio's workers); the model thread
    # sets its own count (MMGEN_TORCH_THREADS). Otherwise a thread whose first torch op is an MKL call (e.g. a
    # scheduler's sqrt) starts a team of its own, and with more OpenMP threads than cores libgomp's idle workers
    # sleep instead of spinning: the model's own team is then woken by the kernel at every op (docs/serving.md).
    os.environ["OMP_NUM_THREADS"] = "1"

import json  # noqa: E402
from concurrent.futures import wait  # noqa: E402
from pathlib import Path  # noqa: E402

from mmgen.app import Limits, ModelLoading, ModelPage, build_demo, serve  # noqa: E402
from mmgen.app.compute import native_bf16  # noqa: E402
from mmgen.app.demo import page_names  # noqa: E402
from mmgen.model_paths import ASSETS  # noqa: E402
from mmgen.tokenizers import SHIPPED_TOKENIZERS  # noqa: E402
from mmgen.tokens import DEFAULT_MODEL  # noqa: E402

SHIPPED_MODELS = [str(ASSETS / name) for name in ("mmgen-base", "mmgen-base-64", "mmgen-emoji")]

SERVER_NAME = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
# bf16 matmuls where the CPU has them natively: ~1.7x faster, same measured accuracy (see docs/speed.md).
# MMGEN_BF16=0 forces float32, MMGEN_BF16=1 forces bf16.
BF16 = os.environ.get("MMGEN_BF16", "").strip().lower() or "auto"


def use_bf16() -> bool:
    """Whether the DiT samples in bf16 (MMGEN_BF16); ValueError for a value other than auto, 0 or 1."""
    if BF16 not in ("auto", "0", "1"):
        raise ValueError(f"MMGEN_BF16 must be auto, 0 or 1, got {BF16!r}")
    return BF16 == "1" or (BF16 == "auto" and native_bf16())


def load_pipeline(model: str):
    """The pipeline (importing torch's and diffusers' model code takes seconds: app.py runs this in the
    background, while the page is already served)."""
    # diffusers' and transformers' lazy imports are not thread-safe: they run here under MODEL_LOADS, as every
    # other model load does (VQModel too: the tokenizers loaded on other threads need it).
    from mmgen.app.loading import MODEL_LOADS

    with MODEL_LOADS:
        import torch
        from diffusers import VQModel  # noqa: F401

        from mmgen.pipeline import MMGenPipeline

        pipe = MMGenPipeline.from_pretrained(model)
    if use_bf16():
        pipe.set_autocast(torch.bfloat16)
    return pipe


def model_folder(model: str) -> str:
    """A local folder, a shipped model's name, or a Hub repo id's files (downloaded when not cached yet)."""
    from mmgen.model_paths import local_model_folder

    if Path(folder := local_model_folder(model), "model_index.json").is_file():
        return folder
    raise ValueError(f"{model}: not a text-to-image model (no model_index.json), such as {DEFAULT_MODEL}")


def example_prompts(folder: str) -> tuple[str, ...]:
    """The model's own example prompts (`example_prompts.json` beside its weights, a list of strings), if any."""
    path = Path(folder) / "example_prompts.json"
    prompts = json.loads(path.read_text()) if path.is_file() else []
    return tuple(p for p in prompts if isinstance(p, str) and p.strip())


def chosen_models() -> list[str]:
    """MMGEN_MODELS (comma-separated), else MMGEN_MODEL alone, else the shipped models that are present."""
    if os.environ.get("MMGEN_MODELS", "").strip():
        if models := [m.strip() for m in os.environ["MMGEN_MODELS"].split(",") if m.strip()]:
            return models
        raise ValueError(f"MMGEN_MODELS={os.environ['MMGEN_MODELS']!r} names no model: e.g. {DEFAULT_MODEL}")
    if os.environ.get("MMGEN_MODEL", "").strip():
        return [os.environ["MMGEN_MODEL"].strip()]
    return [m for m in SHIPPED_MODELS if os.path.isdir(m)] or [DEFAULT_MODEL]


def other_tokenizers(folder: str) -> tuple[str, ...]:
    """The shipped tokenizers besides the model's own, present here: the Tokenizer tab compares them with it. One
    whose files are the model's own (a model folder that ships a copy of one) is the same tokenizer, not another."""
    own = _tokenizer_files(folder)
    return tuple(
        name
        for name, path in SHIPPED_TOKENIZERS.items()
        if Path(path, "vqvae", "config.json").is_file() and _tokenizer_files(path) != own
    )


def _tokenizer_files(folder: str) -> dict[str, bytes]:
    """The files of a model folder's vqvae/ (a few MB), by name; empty when it has none."""
    vqvae = Path(folder, "vqvae")
    return {f.name: f.read_bytes() for f in sorted(vqvae.iterdir()) if f.is_file()} if vqvae.is_dir() else {}


def model_pages(models: list[str]) -> list[ModelPage]:
    """One page per model; the models load one after another in the background, the front page's first."""
    pages, previous = [], None
    for model, name in zip(models, page_names(models)):
        folder = model_folder(model)

        def load(folder=folder, previous=previous):
            if previous is not None:
                wait([previous.future])  # two loads at once would slow the front page's
            return load_pipeline(folder)

        loading = ModelLoading.start(folder, load, bf16=use_bf16())
        examples = Path(folder) / "examples"  # the model's own example images, if it has some
        page = ModelPage(
            name,
            loading,
            Path(folder) / "README.md",  # the About tab says so when there is none
            example_prompts(folder),
            examples if examples.is_dir() else None,
            compared_with=other_tokenizers(folder),
        )
        pages.append(page)
        previous = loading
    return pages


def main_pages() -> tuple[Limits, list[ModelPage]]:
    try:  # MMGEN_MAX_STEPS, MMGEN_MODELS, ...: a bad setting ends the program with a one-line message
        use_bf16()
        return Limits.from_env(), model_pages(chosen_models())  # the page first, the models meanwhile
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    limits, pages = main_pages()
    demo = build_demo(pages, limits=limits)
    serve(demo, limits, server_name=SERVER_NAME)  # bounded queue, capped requests, no raw errors for visitors
