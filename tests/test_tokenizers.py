"""One tokenizer interface over mmgen's VQVAE and diffusers' VQModel: ids and decodes equal each model's own path."""

import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, VQModel
from tokenizer_families import FACTORS, FAMILIES, make_family

from mmgen.data.shapes import shapes_sample
from mmgen.images import pil_to_tensor
from mmgen.models.vqvae import VQVAE
from mmgen.tokenizers import DiffusersTokenizer, MMGenTokenizer, as_tokenizer, load_tokenizer

# How each family is saved: a bare model folder, a pipeline folder (model_index.json) with vqvae/ or movq/, or a
# vqvae/ folder alone; so every way of finding a tokenizer is exercised once.
LAYOUTS = {"amused": "pipeline:vqvae", "movq": "pipeline:movq", "vq-diffusion": "bare", "ldm-f4": "folder:vqvae"}


def save_family(vq: VQModel, root, layout: str) -> str:
    kind, _, sub = layout.partition(":")
    vq.save_pretrained(root / sub if sub else root)
    if kind == "pipeline":
        index = {"_class_name": "SomePipeline", sub: ["diffusers", "VQModel"], "scheduler": ["diffusers", "X"]}
        (root / "model_index.json").write_text(json.dumps(index))
    return str(root)


def images(n: int = 2, side: int = 64) -> torch.Tensor:
    return torch.stack([pil_to_tensor(shapes_sample(5, i).image.resize((side, side))) for i in range(n)])


@pytest.mark.parametrize("family", FAMILIES)
def test_ids_and_decodes_equal_diffusers_own_path(family, tmp_path):
    vq = make_family(family)
    tok = load_tokenizer(save_family(vq, tmp_path, LAYOUTS[family]))
    c = vq.config
    assert isinstance(tok, DiffusersTokenizer) and tok.name == tmp_path.name
    assert (tok.downsample_factor, tok.num_codes) == (FACTORS[family], c.num_vq_embeddings)
    assert tok.codebook.shape == (c.num_vq_embeddings, c.vq_embed_dim or c.latent_channels)

    x = images()
    enc = tok.encode(x)
    f = FACTORS[family]
    unit = family == "amused"  # aMUSEd's VQ-GAN works in [0, 1] pixels, as its pipelines feed it
    assert enc.indices.dtype == torch.long and enc.indices.shape == (2, 64 // f, 64 // f)
    assert enc.indices.unique().numel() > 2  # tokens differ: the equalities below mean something

    with torch.no_grad():
        h = vq.encode((x + 1) / 2 if unit else x).latents  # diffusers' own path: encode, quantize, decode
        _, _, (_, _, ids) = vq.quantize(h)
        assert torch.equal(enc.indices.flatten(), ids)
        assert torch.equal(enc.unquantized, h)
        shape = (*enc.indices.shape, tok.code_dim)
        if c.lookup_from_codebook:  # ids in, looked up inside decode
            reference = vq.decode(ids, force_not_quantize=True, shape=shape).sample
        else:  # the ids' code vectors in
            reference = vq.decode(vq.quantize.get_codebook_entry(ids, shape), force_not_quantize=True).sample
        requantized = vq.decode(h).sample  # the default path quantises again (straight-through arithmetic)
        if unit:
            reference, requantized = reference * 2 - 1, requantized * 2 - 1
    decoded = tok.decode_indices(enc.indices)
    assert decoded.shape == x.shape and decoded.abs().max() <= 1
    assert torch.equal(decoded, reference.clamp(-1, 1))
    assert torch.equal(tok.decode(enc.latents), decoded)
    torch.testing.assert_close(decoded, requantized.clamp(-1, 1), atol=1e-4, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_half_precision_model_computes_in_its_dtype(dtype):
    """A model loaded in half precision (a pipeline's vqvae, say) used to fail on a float32 input; it computes in
    its own dtype, takes the ids its own encode gives, and hands back float32."""
    vq = VQVAE.from_pretrained("assets/vqgan-f8", subfolder="vqvae", dtype=dtype).eval()
    tok = as_tokenizer(vq)
    x = images()
    enc = tok.encode(x)
    with torch.no_grad():
        assert torch.equal(enc.indices, vq.encode(x.to(dtype)).indices)
    decoded = tok.decode_indices(enc.indices)
    assert enc.latents.dtype == decoded.dtype == torch.float32 and decoded.shape == x.shape


def test_spatial_norm_decoder_reads_the_codes(tmp_path):
    """MoVQ's decoder takes the codes twice (input and every norm): dropping the second changes the image."""
    tok = load_tokenizer(save_family(make_family("movq"), tmp_path, "bare"))
    ids = tok.encode(images(1)).indices
    codes = tok.indices_to_codes(ids)
    with torch.no_grad():
        without = tok.model.decoder(tok.model.post_quant_conv(codes), torch.zeros_like(codes))
    assert not torch.allclose(tok.decode_indices(ids), without.clamp(-1, 1), atol=1e-3)


def test_shipped_model_is_mmgens_tokenizer():
    tok = load_tokenizer("assets/mmgen-base-64")
    assert (
        isinstance(tok, MMGenTokenizer)
        and tok.name == "mmgen-base-64"
        and load_tokenizer("mmgen-base-64").name == tok.name
    )
    assert (tok.num_codes, tok.code_dim, tok.downsample_factor) == (512, 8, 4)
    assert tok.label == "mmgen-base-64 (512 codes, f4)"
    assert load_tokenizer("assets/mmgen-base").label == "mmgen-base (1,024 codes, f8)"  # the shipped model's
    vq = VQVAE.from_pretrained("assets/mmgen-base-64", subfolder="vqvae", dtype=torch.float32).eval()
    x = images()
    enc = tok.encode(x)
    with torch.no_grad():
        ref = vq.encode(x)
        assert torch.equal(enc.indices, ref.indices) and torch.equal(enc.latents, ref.latents)
        assert torch.equal(tok.decode_indices(enc.indices), vq.decode_indices(ref.indices))
    # unquantized is what the quantiser compared, in its metric: the picked code has the largest dot product
    assert tok.metric == "cosine" and torch.allclose(enc.unquantized.norm(dim=1), torch.ones(2, 16, 16))
    scores = torch.einsum("bdhw,kd->bhwk", enc.unquantized, tok.codebook)
    assert torch.equal(scores.argmax(-1), enc.indices)


def test_bad_input_is_a_clear_error(tmp_path):
    tok = load_tokenizer(save_family(make_family("ldm-f4"), tmp_path, "bare"))
    with pytest.raises(ValueError, match="multiples of 4"):
        tok.encode(torch.zeros(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"0\.\.31"):
        tok.decode_indices(torch.full((1, 2, 2), 32))
    with pytest.raises(ValueError, match="long token ids"):
        tok.decode_indices(torch.zeros(2, 2))


def test_loading_failures_say_why(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # nothing here may reach the network
    (tmp_path / "empty").mkdir()
    AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=2).save_pretrained(tmp_path / "kl")
    (tmp_path / "pipe").mkdir()
    (tmp_path / "pipe" / "model_index.json").write_text(json.dumps({"_class_name": "P", "unet": ["diffusers", "U"]}))
    cases = {
        str(tmp_path / "missing"): "no such folder",
        str(tmp_path / "empty"): "no tokenizer here",
        str(tmp_path / "kl"): "AutoencoderKL, not a VQ tokenizer",
        str(tmp_path / "pipe"): "no VQ tokenizer",
        "someone/no-such-tokenizer": "could not be loaded from the Hugging Face Hub",
        " ": "no tokenizer given",
    }
    for name, message in cases.items():
        with pytest.raises(ValueError, match=message):
            load_tokenizer(name)


def test_a_codebook_of_one_code_is_refused():
    with pytest.raises(ValueError, match="a codebook of 1 code holds no information"):
        as_tokenizer(make_family("ldm-f4", num_vq_embeddings=1), "one-code")


def test_weights_load_from_safetensors_only(tmp_path):
    """A .bin file is a pickle, which can run code when loaded: refused, with what to do; a folder holding only a
    variant's safetensors (diffusion_pytorch_model.fp16.safetensors) loads; a pipeline naming a vqvae/ without its
    config says so."""
    vq = make_family("ldm-f4")
    vq.save_pretrained(tmp_path / "bin", safe_serialization=False)
    with pytest.raises(ValueError, match=r"pickle files \(\.bin\).*save the model again with safetensors"):
        load_tokenizer(str(tmp_path / "bin"))
    vq.save_pretrained(tmp_path / "variant", variant="fp16")
    saved = [p.name for p in (tmp_path / "variant").glob("*.safetensors")]
    assert saved == ["diffusion_pytorch_model.fp16.safetensors"]
    ids = load_tokenizer(str(tmp_path / "variant")).encode(images(1)).indices
    assert torch.equal(ids, as_tokenizer(vq).encode(images(1)).indices)
    save_family(vq, tmp_path / "pipe", "pipeline:vqvae")
    (tmp_path / "pipe" / "vqvae" / "config.json").unlink()
    with pytest.raises(ValueError, match="names a vqvae/ tokenizer, but vqvae/config.json is missing"):
        load_tokenizer(str(tmp_path / "pipe"))


def test_a_hub_repo_is_read_as_a_local_folder_is(monkeypatch):
    """A Hub repo laid out as vqgan-f8 is (no model_index.json, the tokenizer in vqvae/) loaded by folder but was
    refused by Hub id; the Hub is served here from the shipped folder."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError

    from mmgen import tokenizer_hub

    def download(repo_id, filename, subfolder=None, **kwargs):
        path = Path("assets/vqgan-f8") / (subfolder or "") / filename
        if not path.is_file():
            raise EntryNotFoundError(f"{path} is not in the repo")
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info", lambda self, repo_id: None)  # the Hub answers
    subfolder, config = tokenizer_hub.hub_config("me/vqgan-f8", None)
    assert subfolder == "vqvae" and config["_class_name"] == "VQVAE"


def test_a_hub_id_offline_is_refused_at_once(monkeypatch):
    """Offline, a tokenizer's Hub id was downloaded with the Hub client's retries: 25 s and six 'Retrying in 8s'
    lines before the error. Now one request says the Hub cannot answer, and only the cache is read."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def unreachable(self, repo_id):
        raise ConnectionError("Name or service not known")

    def download(repo_id, filename, subfolder=None, local_files_only=False):
        if not local_files_only:
            raise AssertionError("a download over the network, with its retries")
        raise LocalEntryNotFoundError("not in the local cache")

    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info", unreachable)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    with pytest.raises(ValueError, match="foo/bar: no such folder, and it could not be loaded from the Hugging Face"):
        load_tokenizer("foo/bar")
