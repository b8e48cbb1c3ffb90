import pytest
import torch

from mmgen.models.vqvae import VQVAE, VQVAE_PRESETS


@pytest.mark.parametrize("hw", [(32, 32), (64, 64), (48, 80), (256, 256)])
def test_encode_decode_shapes(tiny_vq, hw):
    H, W = hw
    x = torch.rand(2, 3, H, W) * 2 - 1
    with torch.no_grad():
        enc = tiny_vq.encode(x)
        D = tiny_vq.config.code_dim
        assert enc.latents.shape == (2, D, H // 4, W // 4)
        assert enc.indices.shape == (2, H // 4, W // 4)
        y = tiny_vq.decode(enc.latents)
        assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
        assert torch.equal(tiny_vq.decode_indices(enc.indices), y)


def test_base_preset_gives_16x16_tokens_for_a_64x64_scene():
    vq = VQVAE(**VQVAE_PRESETS["base"]).eval()
    with torch.no_grad():
        assert vq.encode(torch.zeros(1, 3, 64, 64)).indices.shape == (1, 16, 16)
    assert vq.downsample_factor == 4


@pytest.mark.parametrize("shape", [(1, 3, 30, 32), (1, 1, 32, 32), (3, 32, 32)])
def test_bad_shapes_raise_clear_errors(tiny_vq, shape):
    with pytest.raises(ValueError, match="divisible|expected images"):
        tiny_vq.encode(torch.zeros(shape))


def test_save_load_round_trip_is_exact(tiny_vq, tmp_path):
    tiny_vq.save_pretrained(tmp_path / "vq")
    assert (tmp_path / "vq" / "diffusion_pytorch_model.safetensors").exists()
    loaded = VQVAE.from_pretrained(tmp_path / "vq").eval()
    public = lambda cfg: {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items() if k[0] != "_"}  # noqa: E731
    assert public(loaded.config) == public(tiny_vq.config)  # JSON stores tuples as lists
    for k, v in tiny_vq.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(tiny_vq.encode(x).indices, loaded.encode(x).indices)


def test_fp16_weights_load_back_in_float32(tiny_vq, tmp_path):
    tiny_vq.to(torch.float16).save_pretrained(tmp_path / "vq16")
    loaded = VQVAE.from_pretrained(tmp_path / "vq16", dtype=torch.float32)
    assert next(loaded.parameters()).dtype == torch.float32


def test_training_steps_lower_the_loss():
    torch.manual_seed(0)
    vq = VQVAE(**VQVAE_PRESETS["tiny"]).train()
    opt = torch.optim.Adam(vq.parameters(), lr=3e-3)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    losses = []
    for _ in range(30):
        out = vq(x)
        loss = out.recon_loss + out.commit_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_training_forward_returns_named_outputs(tiny_vq):
    out = tiny_vq.train()(torch.zeros(2, 3, 32, 32))
    assert out.sample.shape == (2, 3, 32, 32)
    assert out.indices.shape == (2, 8, 8)
    assert out.recon_loss.ndim == 0 and out.commit_loss.ndim == 0 and out.perplexity.ndim == 0


def test_pixels_a_tokenizer_would_misread_are_refused(tiny_vq):
    """Pixels 0..255 as floats, or NaN, came back as wrong tokens (NaN: a grid of code 0) without a word."""
    from mmgen.tokenizers import as_tokenizer

    x = torch.rand(1, 3, 16, 16) * 2 - 1
    for tokenizer in (tiny_vq, as_tokenizer(tiny_vq, "tiny")):
        with pytest.raises(
            ValueError, match=r"expected images in \[-1, 1\], got values .*\.\.25\d.* \(pixels 0\.\.255"
        ):
            tokenizer.encode((x + 1) * 127.5)
        with pytest.raises(ValueError, match="NaN or infinite"):
            tokenizer.encode(torch.where(x > 0, x, torch.nan))
        assert torch.equal(tokenizer.encode(x * 1.2).indices, tokenizer.encode(x * 1.2).indices)  # overshoot is fine
        ids = tokenizer.encode(x.double()).indices  # any float dtype, as the model's
        assert torch.equal(ids, tokenizer.encode(x).indices)
        assert torch.equal(tokenizer.decode_indices(ids.int()), tokenizer.decode_indices(ids))  # any integer ids
        with pytest.raises(ValueError, match="token ids|long token ids"):
            tokenizer.decode_indices(ids.float())
