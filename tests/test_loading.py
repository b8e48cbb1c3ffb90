"""The page is served before the pipeline has loaded (`mmgen.app.loading`): what it shows comes from the model's
config files, model events wait for the pipeline, and a failed load is a message for visitors, not a hang."""

import json
import os
import threading
from concurrent.futures import Future
from pathlib import Path

import httpx
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from conftest import make_tiny_pipe  # noqa: E402
from gradio_client import Client  # noqa: E402

from mmgen.app import Limits, ModelLoading, build_demo, serve  # noqa: E402
from mmgen.app.loading import ModelFacts  # noqa: E402
from mmgen.pipeline import MMGenPipeline  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "mmgen-base"
FAST = ("a red circle", 4, 2.0, 0, False, "ddim", 0.5, 1, False)  # /generate's inputs


def test_facts_from_the_config_files_match_the_loaded_pipeline(tmp_path):
    facts = ModelFacts.of_folder(SHIPPED)
    vq = json.loads((SHIPPED / "vqvae" / "config.json").read_text())
    assert facts.num_codes == vq["num_codes"] == 1024 and facts.downsample_factor == 8 and facts.grid_side == 16
    assert facts.scheduler == "euler-ancestral" and not facts.bf16
    tiny = make_tiny_pipe()
    tiny = MMGenPipeline(**tiny.components, sampling_defaults={"num_inference_steps": 3, "guidance_scale": 6})
    for part in ("vqvae", "transformer"):
        getattr(tiny, part).save_config(tmp_path / part)
    tiny.scheduler.save_config(tmp_path / "scheduler")
    tiny.save_config(tmp_path)  # model_index.json, with the model's own sampling defaults
    facts = ModelFacts.of_folder(tmp_path)
    assert facts == ModelFacts.of_pipeline(tiny)
    assert facts.sampling["num_inference_steps"] == 3 and facts.sampling["guidance_scale"] == 6.0


def _serve(loading: ModelLoading):
    limits = Limits(job_seconds=30)
    demo = build_demo(loading, model_name="tiny-test", limits=limits)
    serve(demo, limits, prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    return demo


def test_the_page_is_served_while_the_model_loads_and_events_wait_for_it():
    pipe = make_tiny_pipe()
    release = threading.Event()
    future: Future = Future()
    loading = ModelLoading(ModelFacts.of_pipeline(pipe), future)
    demo = _serve(loading)
    try:
        client = Client(demo.local_url, verbose=False, download_files=False)  # the page and its API: served
        assert not loading.done()
        job = client.submit(*FAST, api_name="/generate")

        def load():
            release.wait(10)
            future.set_result(pipe)

        threading.Thread(target=load).start()
        release.set()
        image, *_ = job.result(timeout=60)
        assert image and loading.done()
        # Only through the queue: gradio's /run/ routes ran a job outside it, its size and every visitor limit
        direct = httpx.post(f"{demo.local_url}gradio_api/run/generate", json={"data": list(FAST)}, timeout=30)
        assert direct.status_code == 404
    finally:
        demo.close()


def test_a_model_that_failed_to_load_gets_a_message_not_a_hang():
    pipe = make_tiny_pipe()
    future: Future = Future()
    future.set_exception(OSError("/secret/path/diffusion_pytorch_model.safetensors: truncated"))
    demo = _serve(ModelLoading(ModelFacts.of_pipeline(pipe), future))
    try:
        client = Client(demo.local_url, verbose=False, download_files=False)
        with pytest.raises(Exception, match="The model could not be loaded on this Space") as refused:
            client.predict(*FAST, api_name="/generate")
        assert "/secret" not in str(refused.value) and "safetensors" not in str(refused.value)
    finally:
        demo.close()


def test_the_page_needs_neither_diffusers_nor_transformers():
    """What app.py imports before it serves the page: gradio and torch, not the model code (seconds)."""
    import subprocess
    import sys

    code = "import sys, app; print(sorted(m for m in ('diffusers', 'transformers') if m in sys.modules))"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_checking_a_visitors_settings_imports_no_model_code():
    """A visitor's settings are checked while the model may still load on its own thread; importing diffusers on
    two threads at once broke its lazy imports (accelerate's circular ones) and the model never loaded."""
    import subprocess
    import sys

    code = (
        "import sys, app\n"
        "from mmgen.app.limits import Limits\n"
        "from mmgen.settings import SamplingSettings\n"
        "Limits().check_sampling(SamplingSettings('a red circle', scheduler='euler-ancestral'))\n"
        "print(sorted(m for m in ('diffusers', 'transformers', 'accelerate') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_every_model_load_of_the_app_takes_its_turn(monkeypatch, tmp_path):
    """diffusers builds models under accelerate's `init_empty_weights`, which patches torch for the whole process:
    the next page's text encoder, built on another thread meanwhile, got "meta" parameters and that page never
    loaded (5 cold starts in 6). Each page's pipeline and each tokenizer loads holding MODEL_LOADS."""
    import app
    from mmgen.app import tokenizer_registry as tokenizers
    from mmgen.app.compute import ModelThread
    from mmgen.app.loading import MODEL_LOADS
    from mmgen.pipeline import MMGenPipeline
    from mmgen.tokenizers import as_tokenizer

    held = []
    pipe = make_tiny_pipe()

    def record(*args, **kwargs):
        held.append(MODEL_LOADS.locked())
        return pipe

    monkeypatch.setattr(MMGenPipeline, "from_pretrained", record)
    monkeypatch.setattr(tokenizers, "load_tokenizer", lambda source: record() and as_tokenizer(pipe.vqvae, source))

    assert app.load_pipeline(str(tmp_path)) is pipe
    registry = tokenizers.TokenizerRegistry(
        as_tokenizer(pipe.vqvae, "own"), "own", ModelThread(threads=1), lambda f: []
    )
    _, future = registry.load(str(tmp_path))
    future.result(timeout=30)
    assert held == [True, True] and not MODEL_LOADS.locked()


def test_a_visitors_event_imports_transformers_only_once_the_model_has_loaded():
    """diffusers' and transformers' lazy imports break for good when two threads run them at once: a Generate
    clicked 1-2 s into a cold start imported transformers (to name the prompt's unknown words) beside the loader's
    own imports, and the model never loaded (8 clicks in 8). The event waits for the model first; run in a fresh
    process, where nothing has imported transformers yet."""
    import subprocess
    import sys

    code = """
import sys
from types import SimpleNamespace
from mmgen.app.generate import GenerateTab

seen = []
class Loading:
    @property
    def pipe(self):
        seen.append("transformers" in sys.modules)
        raise TimeoutError("still loading")
try:
    GenerateTab.unknown_words(SimpleNamespace(ctx=Loading()), "a red circle")
except TimeoutError:
    pass
print(seen)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[False]"
