"""The app with other tokenizers beside the generator's: one preloaded through MMGEN_TOKENIZERS, one loaded through
the load box, both tiny random diffusers VQModels saved to folders (`tokenizer_families.py`); compare, the
quantisation ambiguity map and the paged codebook, called through gradio_client."""

import math
import os
import shutil
from concurrent.futures import Future
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import Client, handle_file  # noqa: E402
from PIL import Image  # noqa: E402
from tokenizer_families import make_family  # noqa: E402

from mmgen.app.codebook import GRID_TOP  # noqa: E402
from mmgen.data.shapes import shapes_sample  # noqa: E402

BIG_K = 600  # over the 512 codes shown on one page: 3 pages of 256


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tokenizers")
    made = {"vqdiff": make_family("vq-diffusion"), "ldm600": make_family("ldm-f4", num_vq_embeddings=BIG_K)}
    for name, model in made.items():
        model.save_pretrained(root / name)
    return {name: root / name for name in made}


@pytest.fixture(scope="module")
def app_url(folders):
    """A tiny app whose host preloads the vq-diffusion-like tokenizer (MMGEN_TOKENIZERS)."""
    from conftest import launched, make_tiny_pipe

    import app

    before = os.environ.get("MMGEN_TOKENIZERS")
    os.environ["MMGEN_TOKENIZERS"] = str(folders["vqdiff"])
    try:
        demo = app.build_demo(make_tiny_pipe(), model_name="tiny-test")
    finally:
        os.environ.pop("MMGEN_TOKENIZERS") if before is None else os.environ.update(MMGEN_TOKENIZERS=before)
    with launched(demo) as url:
        yield url


@pytest.fixture
def client(app_url):
    return Client(app_url, verbose=False)


@pytest.fixture
def scene(tmp_path):
    path = tmp_path / "scene.png"
    shapes_sample(0, 0).image.resize((64, 64)).save(path)
    return handle_file(str(path))


def _value(x):
    return x["value"] if isinstance(x, dict) and x.get("__type__") == "update" else x


def test_compare_reads_only_uploads(client, tmp_path):
    """A file of the server named by path (no gradio upload) is refused, not compared and shown."""
    secret = tmp_path / "secret.png"
    shapes_sample(0, 0).image.save(secret)
    with pytest.raises(Exception, match="reads only files uploaded to it"):
        client.predict({"path": str(secret)}, ["tiny-test", "vqdiff"], api_name="/compare_tokenizers")


def test_compare_the_generators_tokenizer_with_a_preloaded_one(client, scene, folders):
    table, sheet, info = client.predict(scene, ["tiny-test", "vqdiff"], api_name="/compare_tokenizers")
    rows = {row[0].split(" (")[0]: dict(zip(table["headers"], row)) for row in table["data"]}
    assert set(rows) == {"tiny-test", "vqdiff"} and "Compared at 64×64 px" in info
    assert "below 0: reversed" in info  # edges in place is a slope, not a share
    assert rows["tiny-test"]["grid"] == "16×16" and rows["vqdiff"]["grid"] == "8×8"  # f4 and f8
    assert rows["vqdiff"]["codes"] == 48 and rows["vqdiff"]["bits"] == round(64 * math.log2(48))
    assert rows["vqdiff"]["compression ×"] == round(64 * 64 * 24 / (64 * math.log2(48)), 1)
    assert all(isinstance(r["PSNR dB"], float) and isinstance(r["edges in place"], float) for r in rows.values())
    original, recon = shapes_sample(0, 0).image.resize((64, 64)), Image.open(sheet)
    assert recon.width > 3 * 128 and recon.height > 2 * 128  # 3 columns, 2 rows, each enlarged to 128 px
    from mmgen.compare import reconstruct
    from mmgen.tokenizers import load_tokenizer

    here = reconstruct(load_tokenizer(str(folders["vqdiff"])), original)  # the same tokenizer, loaded by this test
    assert rows["vqdiff"]["PSNR dB"] == pytest.approx(here.psnr, abs=0.01) and here.psnr < 40
    with pytest.raises(Exception, match="Pick 2 to 4 tokenizers"):
        client.predict(scene, ["tiny-test"], api_name="/compare_tokenizers")
    with pytest.raises(Exception, match="'nope' is not loaded on this Space"):
        client.predict(scene, ["tiny-test", "nope"], api_name="/compare_tokenizers")


def test_load_a_folder_then_tokenize_edit_and_see_the_ambiguity(client, scene, folders, monkeypatch):
    monkeypatch.chdir(folders["ldm600"].parent)  # visitors load folders inside the app's own (its working directory)
    status, picker = client.predict(str(folders["ldm600"]), api_name="/load_tokenizer")
    assert "Loaded **ldm600**" in status and f"{BIG_K:,} codes" in status
    assert _value(picker) == "ldm600" and ["ldm600 (600 codes, f4)", "ldm600"] in picker["choices"]
    original, recon, stats, tmap, usage, edited, info = client.predict(scene, "ldm600", api_name="/tokenize")
    assert "16×16 tokens" in stats and f"of {BIG_K} codes used" in stats and "tokenizer ldm600" in stats
    sheet, text = client.predict(api_name="/ambiguity")
    assert Image.open(sheet).width > 2 * 256 and "of 256 tokens" in text and "euclidean" in text
    client.predict("0,0", api_name="/select_cells")
    edited, tmap, info, usage = client.predict(BIG_K - 1, api_name="/set_code")  # past the generator's 64 codes
    assert f"to code {BIG_K - 1}" in info
    with pytest.raises(Exception, match=f"between 0 and {BIG_K - 1}"):
        client.predict(BIG_K, api_name="/set_code")
    with pytest.raises(Exception, match="tokenize the image with tiny-test first"):
        client.predict("a red circle", 0, api_name="/repaint")


def test_a_large_codebook_is_paged_and_counts_this_visitors_images(client, scene, folders, monkeypatch):
    monkeypatch.chdir(folders["ldm600"].parent)
    client.predict(str(folders["ldm600"]), api_name="/load_tokenizer")
    grid, usage, info, page, code_id = client.predict("ldm600", "code id", 3, api_name="/codebook_page")
    assert "Page 3 of 3 (88 codes, codes 512-599)" in info and "value" not in page  # the box keeps what was typed
    assert code_id["maximum"] == BIG_K - 1 and "Your uploads: none yet" in info
    assert Image.open(grid).size == (32 * 33 + 1, GRID_TOP + 3 * 33 + 1)  # 88 tiles of 16 px at 2x, rows of 32
    assert "perplexity" in info and "Unused in the reference set (not dead codes" in info
    client.predict(scene, "ldm600", api_name="/tokenize")
    *_, info, page, _ = client.predict("ldm600", "code id", 99, api_name="/codebook_page")  # clamped to the last
    assert "Your uploads: 1 image(s), 256 tokens" in info and "Page 3 of 3" in info and page["value"] == 3
    details = client.predict(590, "code id", "ldm600", api_name="/code_details")
    big, code_info, neighbours, examples, grid, code = details
    assert "**Code 590**" in code_info and "in your uploads" in code_info and code == 590
    assert len(neighbours) == 8 and all("dist" in n["caption"] for n in neighbours)
    grid, usage, info = client.predict("usage (most used first)", api_name="/codebook")  # as before: the generator's
    assert "**tiny-test** · 64 codes" in info and "Page 1 of 1" in info


def test_bad_folders_and_hub_ids_get_messages(client, tmp_path, monkeypatch):
    from huggingface_hub import constants

    (tmp_path / "app").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.chdir(tmp_path / "app")
    # Outside the app's folder: one answer whether the folder is there or not, and nothing loaded
    for source in (str(outside), str(tmp_path / "missing"), "../outside", "/", "~"):
        with pytest.raises(Exception, match="folders outside this app's own folder can't be loaded from the page"):
            client.predict(source, api_name="/load_tokenizer")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="no tokenizer here") as refused:
        client.predict(str(tmp_path / "empty"), api_name="/load_tokenizer")
    assert str(tmp_path) not in str(refused.value)
    (tmp_path / "kl").mkdir()
    (tmp_path / "kl" / "config.json").write_text('{"_class_name": "AutoencoderKL"}')
    with pytest.raises(Exception, match="not a VQ tokenizer"):
        client.predict(str(tmp_path / "kl"), api_name="/load_tokenizer")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # the server runs in this process
    with pytest.raises(Exception, match="can't reach the Hugging Face Hub") as refused:
        client.predict("someone/no-such-tokenizer", api_name="/load_tokenizer")
    assert "LocalEntryNotFoundError" not in str(refused.value)
    with pytest.raises(Exception, match="Type a model folder"):
        client.predict("  ", api_name="/load_tokenizer")


def test_a_visitors_hub_tokenizer_is_checked_for_size_before_its_download(monkeypatch, folders, tiny_vq):
    """The Hub's file list (no download) says how large the tokenizer's weights are: over the Space's limit, the
    load is refused; the host's preloads, folders and shipped names are not looked up."""
    from types import SimpleNamespace

    import huggingface_hub

    from mmgen.app import tokenizer_registry as tokenizers
    from mmgen.app.compute import ModelThread
    from mmgen.app.tokenizer_registry import TokenizerRegistry, check_download
    from mmgen.tokenizers import as_tokenizer

    files = [
        ("vqvae/diffusion_pytorch_model.safetensors", 600),
        ("vqvae/diffusion_pytorch_model.fp16.safetensors", 300),  # another copy: not downloaded, not counted
        ("movq/a.safetensors", 100),
        ("unet/b.safetensors", 900),
    ]
    siblings = [SimpleNamespace(rfilename=name, size=mb * 2**20) for name, mb in files]
    looked_up = []

    class Hub:
        def model_info(self, repo_id, files_metadata=False, timeout=None):
            assert timeout  # a Hub that never answers must not hold the loader thread
            looked_up.append(repo_id)
            return SimpleNamespace(siblings=siblings)

    monkeypatch.setattr(huggingface_hub, "HfApi", Hub)
    monkeypatch.setattr(tokenizers, "load_tokenizer", lambda source: as_tokenizer(tiny_vq, source))  # no network
    check_download("someone/vq", max_mb=600)  # the largest tokenizer folder, not the pipeline's other parts
    with pytest.raises(ValueError, match="its tokenizer's weights are 600 MB, over this Space's limit of 500 MB"):
        check_download("someone/vq", max_mb=500)
    registry = TokenizerRegistry(
        as_tokenizer(tiny_vq, "own"), "own", ModelThread(threads=1), lambda f: [], 4, None, 500
    )
    with pytest.raises(ValueError, match="MMGEN_MAX_TOKENIZER_MB"):
        registry.load("someone/vq")[1].result(timeout=60)
    looked_up.clear()
    registry.load(str(folders["vqdiff"]))[1].result(timeout=60)
    registry.load("someone/vq", pinned=True)[1].result(timeout=60)
    assert looked_up == []  # a folder is not looked up, nor is what the host preloads (pinned)


def test_a_hub_id_the_host_cannot_reach_is_said_to_be_unreachable_not_mistyped():
    """No network and HF_HUB_OFFLINE unset: the Hub's retries end in LocalEntryNotFoundError, which used to read
    "check the repo id"."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    from mmgen.app.tokenizer_registry import load_failure

    try:
        try:
            raise LocalEntryNotFoundError("cannot find the requested files in the local cache")
        except LocalEntryNotFoundError as cause:
            raise ValueError("amused/amused-256: could not be loaded from the Hugging Face Hub") from cause
    except ValueError as e:
        said = load_failure("amused/amused-256", e)
    assert "can't reach the Hugging Face Hub" in said and "check the repo id" not in said
    try:
        raise ValueError("someone/x: could not be loaded") from OSError("401 Client Error")
    except ValueError as e:
        assert "check the repo id" in load_failure("someone/x", e)


def test_the_registry_keeps_few_visitor_tokenizers_and_never_the_pinned_ones(folders, tiny_vq, tmp_path):
    from mmgen.app.compute import ModelThread
    from mmgen.app.tokenizer_registry import TokenizerRegistry
    from mmgen.tokenizers import as_tokenizer

    shutil.copytree(folders["vqdiff"], tmp_path / "copy" / "vqdiff")
    registry = TokenizerRegistry(
        as_tokenizer(tiny_vq, "own"), "own", ModelThread(threads=1), lambda f: [], max_loaded=1
    )
    registry.preload([str(folders["ldm600"])])
    key, future = registry.load(str(folders["vqdiff"]))
    assert future.result().num_codes == 48 and registry.load(str(folders["vqdiff"]))[0] == key  # loaded once
    (tmp_path / "link").symlink_to(folders["vqdiff"], target_is_directory=True)
    assert registry.load(str(tmp_path / "link") + "/")[0] == key  # however the folder is spelt
    gate = Future()  # the load waits for it: still loading, for sure, until it is set
    other, loading = registry.load(str(tmp_path / "copy" / "vqdiff"), after=gate)  # another folder, the same name
    with pytest.raises(ValueError, match="still loading: try again in a moment"):
        registry.get(other)  # an event does not hold one of the queue's workers while a load runs
    gate.set_result(None)
    assert other == "vqdiff (2)" and loading.result().num_codes == registry.get(other).num_codes == 48
    assert registry.keys() == ["own", "ldm600", "vqdiff (2)"]  # the visitor's first was dropped; pinned stay
    with pytest.raises(ValueError, match="not loaded on this Space"):
        registry.get("vqdiff")
    bad, future = registry.load(str(tmp_path))
    with pytest.raises(ValueError, match="no tokenizer here"):
        registry.get(bad, wait_s=60)
    assert bad not in registry.keys() and registry.atlas(None).num_codes == tiny_vq.config.num_codes


def test_preloads_are_listed_at_once_and_load_after_the_pipeline(folders, tiny_vq):
    from concurrent.futures import Future

    from mmgen.app.compute import ModelThread
    from mmgen.app.tokenizer_registry import TokenizerRegistry
    from mmgen.tokenizers import as_tokenizer

    pipeline = Future()  # diffusers' lazy imports are not thread-safe: tokenizers load once the pipeline has
    registry = TokenizerRegistry(as_tokenizer(tiny_vq, "own"), "own", ModelThread(threads=1), lambda f: [])
    registry.preload([str(folders["vqdiff"]), "own"], after=pipeline)
    assert registry.preloaded == ["vqdiff"]  # listed (and compared by default) before it loads; never "own" twice
    _, future = registry.load(str(folders["vqdiff"]))
    assert not future.done()
    pipeline.set_result(None)
    assert future.result(timeout=60).num_codes == 48


def test_a_comparison_names_the_bits_its_best_psnr_spent():
    """At the same pixels an f4 makes 4x an f8's tokens: it was named best by PSNR alone, which a learner read
    as "the VQ-VAE beats the VQ-GAN"."""
    from types import SimpleNamespace

    from mmgen.app.compare import best_line

    f4, f8 = SimpleNamespace(name="f4", psnr=24.0, bits=9216.0), SimpleNamespace(name="f8", psnr=21.0, bits=2560.0)
    assert "best PSNR: **f4** (24.00 dB), with 3.6× the bits of f8" in best_line([f4, f8])
    assert best_line([f8, SimpleNamespace(name="g8", psnr=20.0, bits=2304.0)]) == "best PSNR: **f8** (21.00 dB)"
