"""Several models in one app: a page per model (the navbar is the picker), each page's tabs on its own model and
example prompts, API names prefixed by the page, one job gate and one model thread for all; app.py's choice of
models from MMGEN_MODELS / MMGEN_MODEL."""

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import Client  # noqa: E402
from PIL import Image, ImageChops  # noqa: E402

from mmgen.app import ModelLoading, ModelPage, build_demo  # noqa: E402
from mmgen.app.demo import api_prefix, page_names, page_path, unique_paths  # noqa: E402

FAST = ("a large red circle", 4, 2.0, 0, False, "ddim", 0.5, 1, False)  # /generate's inputs


@pytest.fixture(scope="module")
def two_models():
    import torch
    from conftest import launched, make_tiny_pipe

    a, b = make_tiny_pipe(), make_tiny_pipe()
    with torch.no_grad():
        for p in b.transformer.parameters():  # a second model that draws otherwise
            p.add_(torch.randn_like(p) * 0.05)
    b = type(b)(**b.components, sampling_defaults={"num_inference_steps": 3, "guidance_scale": 6})  # its own settings
    b.set_progress_bar_config(disable=True)
    pages = [
        ModelPage("tiny-a", ModelLoading.ready(a)),
        ModelPage("runs/Tiny B", ModelLoading.ready(b), example_prompts=("a grinning face emoji", "a cat icon")),
    ]
    demo = build_demo(pages)
    with launched(demo) as url:
        yield demo, url, (a, b)


def test_each_model_has_a_page_and_its_own_examples(two_models):
    demo, _, _ = two_models
    assert [path for path, _, _ in demo.pages] == ["", "tiny-b"]
    prompts = {b.page: b.value for b in demo.blocks.values() if getattr(b, "elem_id", None) == "prompt"}
    assert prompts["tiny-b"] == "a grinning face emoji"
    assert prompts[""].startswith("a large red circle")  # shapes-v1 examples by default
    a, b = demo.mmgen_contexts
    assert a.model_name == "tiny-a" and b.model_name == "runs/Tiny B"
    assert a.jobs is b.jobs and a.compute is b.compute  # one visitor, one job, whatever the page


def test_each_pages_controls_start_at_its_models_own_settings(two_models):
    demo, _, (a, _) = two_models
    shown = {
        (b.page, b.elem_id): getattr(b, "value", None) for b in demo.blocks.values() if getattr(b, "elem_id", None)
    }
    assert shown["", "steps"] == a.sampling_defaults["num_inference_steps"] and shown["", "guidance"] == 4.0
    assert shown["tiny-b", "steps"] == 3 and shown["tiny-b", "guidance"] == 6.0  # model b sets its own
    assert shown["tiny-b", "branch-guidance"] == 6.0 and shown["tiny-b", "codebook-snap"] == shown["", "codebook-snap"]


def test_every_page_generates_with_its_own_model(two_models):
    demo, url, _ = two_models
    client = Client(url, verbose=False)
    image_a = Image.open(client.predict(*FAST, api_name="/generate")[0]).convert("RGB")
    image_b = Image.open(client.predict(*FAST, api_name="/tiny_b_generate")[0]).convert("RGB")
    assert ImageChops.difference(image_a, image_b).getbbox() is not None  # two models, two images
    names = {page: {e.api_name for e in demo.fns.values() if e.page == page} for page in ("", "tiny-b")}
    assert "on_unload" in names[""]  # one unload event, for every page
    assert names["tiny-b"] == {f"tiny_b_{n}" for n in names[""] - {"on_unload"}}  # none renamed by gradio
    assert {"generate", "tokenize", "caption"} <= names[""]


def test_page_paths_are_url_safe():
    assert page_path("assets/mmgen-emoji") == "mmgen-emoji"
    assert page_path("someone/My Model") == "my-model"
    assert page_path("///") == "model"
    assert unique_paths(["v1/my-model", "v2/my-model", "my-model"]) == ["my-model", "my-model-2", "my-model-3"]
    # the API names the README gives for the shipped models' other pages
    assert [api_prefix(page_path(f"assets/{m}")) for m in ("mmgen-base-64", "mmgen-emoji")] == [
        "mmgen_base_64_",
        "mmgen_emoji_",
    ]


def test_two_models_of_one_name_get_pages_apart(tmp_path, monkeypatch):
    """MMGEN_MODELS=v1/my-model,v2/my-model gave two pages both called my-model; a folder without a card showed
    the shipped model's card in its About tab."""
    from mmgen.app.about import model_card_text

    monkeypatch.chdir(tmp_path)
    for v in ("v1", "v2"):
        (tmp_path / v / "my-model").mkdir(parents=True)
    assert page_names(["v1/my-model", "v2/my-model/", "amused/amused-256"]) == [
        "v1/my-model",
        "v2/my-model",
        "amused/amused-256",
    ]
    assert page_names(["v1/my-model", "v1/my-model"]) == ["v1/my-model (1)", "v1/my-model (2)"]
    assert page_names(["v1/my-model"]) == ["my-model"]
    card = model_card_text(Path("v1/my-model/README.md"))
    assert "No model card" in card and "--out v1/my-model --card" in card


def test_app_chooses_its_models(monkeypatch, tmp_path):
    import app

    monkeypatch.delenv("MMGEN_MODEL", raising=False)
    monkeypatch.delenv("MMGEN_MODELS", raising=False)
    assert app.chosen_models() == [m for m in app.SHIPPED_MODELS if os.path.isdir(m)]
    monkeypatch.setenv("MMGEN_MODEL", "runs/mine")
    assert app.chosen_models() == ["runs/mine"]
    monkeypatch.setenv("MMGEN_MODELS", " a/b , runs/mine ,")
    assert app.chosen_models() == ["a/b", "runs/mine"]
    (tmp_path / "example_prompts.json").write_text('["a cat", "", 3, "a dog"]')
    assert app.example_prompts(str(tmp_path)) == ("a cat", "a dog")
    assert app.example_prompts(str(tmp_path / "none")) == ()


def test_the_navbar_picks_the_model_in_a_browser(two_models, browser):
    """Chromium: the navbar names both models; following the second shows its page, its examples, and generates."""
    from test_browser import TIMEOUT_MS

    _, url, _ = two_models
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(url)
        assert page.locator("#prompt textarea").input_value().startswith("a large red circle")
        page.get_by_role("link", name="runs/Tiny B").click()
        page.wait_for_url("**/tiny-b**")
        page.locator("#prompt textarea").wait_for()
        assert page.locator("#prompt textarea").input_value() == "a grinning face emoji"
        assert "Model: `runs/Tiny B`" in page.content() or page.get_by_text("runs/Tiny B").count() > 0
        page.locator("#generate").click()
        page.locator("#generate-info").get_by_text("steps of").wait_for(timeout=TIMEOUT_MS)
        # a typed prompt follows the visitor to the other model's page (each page starts afresh: it was lost)
        page.locator("#prompt textarea").fill("a red circle on a cat")
        page.get_by_role("link", name="tiny-a").click()
        page.wait_for_function("document.querySelector('#prompt textarea')?.value == 'a red circle on a cat'")
    finally:
        page.close()


def test_a_page_compares_its_tokenizer_with_the_other_shipped_ones(tiny_model_dir, monkeypatch, tmp_path):
    from conftest import make_tiny_pipe

    import app

    pages = [ModelPage("tiny-a", ModelLoading.ready(make_tiny_pipe()), compared_with=(tiny_model_dir,))]
    demo = build_demo(pages)
    picker = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "compare-tokenizers")
    key = os.path.basename(tiny_model_dir)
    assert picker.value == ["tiny-a", key]  # loaded at start, compared by default
    assert demo.mmgen_contexts[0].tokenizers.get(key, wait_s=60).num_codes == 64
    # app.py: the shipped tokenizers present, besides the model's own
    monkeypatch.setattr(app, "SHIPPED_TOKENIZERS", {"own": tiny_model_dir, "other": tiny_model_dir, "gone": "/nope"})
    assert app.other_tokenizers("/somewhere/else") == ("own", "other")
    assert app.other_tokenizers(tiny_model_dir) == ()
    copy = tmp_path / "copy"  # a model shipping a copy of a shipped tokenizer: the same one, not compared with itself
    shutil.copytree(Path(tiny_model_dir, "vqvae"), copy / "vqvae")
    assert app.other_tokenizers(str(copy)) == ()
    (copy / "vqvae" / "config.json").write_text("{}")  # another tokenizer in the same place
    assert app.other_tokenizers(str(copy)) == ("own", "other")
