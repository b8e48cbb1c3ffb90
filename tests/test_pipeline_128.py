"""A 128-pixel pipeline: an f8 tokenizer under a 16x16 latent grid. Every pipeline feature the app builds on
(candidates, codebook snap, the trajectory, step mode, inpainting, token round trips) works at that size."""

import pytest
import torch

from mmgen.callbacks import TrajectoryRecorder
from mmgen.models.vqvae import VQVAE


@pytest.fixture(scope="module")
def pipe128():
    from conftest import make_tiny_pipe

    from mmgen.models.dit import DIT_PRESETS, DiT

    pipe = make_tiny_pipe()
    torch.manual_seed(0)
    f8 = VQVAE(
        block_channels=(8, 8, 16, 16),
        encoder_layers=(0, 0, 1, 1),
        decoder_layers=(0, 0, 1, 1),
        num_codes=64,
        code_dim=4,
    )
    f8.train()
    f8(torch.rand(4, 3, 64, 64) * 2 - 1)  # the codebook's k-means start
    dit = DiT(sample_size=16, in_channels=4, text_dim=32, scaling_factor=2.0, **DIT_PRESETS["tiny"])
    for p in dit.proj_out.parameters():
        torch.nn.init.normal_(p, std=0.02)
    pipe.register_modules(vqvae=f8.eval(), transformer=dit.eval())
    return pipe


def test_images_are_128_px_over_16x16_tokens_with_every_sampling_option(pipe128):
    rec = TrajectoryRecorder()
    out = pipe128(
        "a red circle",
        num_inference_steps=3,
        num_candidates=2,
        codebook_snap=0.5,
        generator=torch.Generator().manual_seed(0),
        callback_on_step_end=rec,
        callback_on_step_end_tensor_inputs=rec.tensor_inputs,
    )
    assert out.images[0].size == (128, 128) and out.tokens.shape == (1, 16, 16)
    assert rec.steps[-1].images[0].size == (128, 128) and rec.steps[-1].tokens.shape[-2:] == (16, 16)
    assert list(pipe128.decode_tokens(out.tokens)[0].getdata()) == list(out.images[0].getdata())


def test_step_mode_and_inpainting_at_128_px(pipe128):
    kwargs = dict(num_inference_steps=3, guidance_scale=3.0)
    run = pipe128.stepwise("a red circle", generator=torch.Generator().manual_seed(0), **kwargs)
    while not run.done:
        run.step()
    full = pipe128("a red circle", generator=torch.Generator().manual_seed(0), **kwargs)
    assert torch.equal(run.result().tokens, full.tokens)
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[4:10, 6:12] = True
    painted = pipe128.inpaint(
        "a blue star", full.tokens[0], mask, generator=torch.Generator().manual_seed(1), **kwargs
    )
    assert painted.images[0].size == (128, 128)
    assert torch.equal(painted.tokens[0][~mask], full.tokens[0][~mask])


def test_the_tokenizer_ceiling_draws_its_scenes_at_128_px(pipe128):
    from mmgen.eval.ceiling import tokenizer_ceiling

    ceiling = tokenizer_ceiling(pipe128, n_single=2, n_two=2)
    assert ceiling["single"]["rendered"]["all"] == 1.0 and ceiling["two"]["rendered"]["all"] == 1.0
    assert ceiling["two"]["tokenized"]["n"] == 2  # the tiny f8's round trip, scored like any other


def test_the_tokenizer_ceiling_reads_the_decoded_images(pipe128, monkeypatch):
    """A decoder that draws blank canvases scores nothing after the round trip, the scenes as drawn still all."""
    from PIL import Image

    from mmgen.eval.ceiling import tokenizer_ceiling

    monkeypatch.setattr(pipe128, "decode_tokens", lambda ids: [Image.new("RGB", (128, 128), "white")] * len(ids))
    ceiling = tokenizer_ceiling(pipe128, n_single=2, n_two=2)
    for name in ("single", "two"):
        assert ceiling[name]["rendered"]["all"] == 1.0
        assert ceiling[name]["tokenized"]["all"] == 0.0 and ceiling[name]["tokenized_strict"]["all"] == 0.0


def test_eval_caption_draws_its_scenes_at_the_models_size(pipe128):
    """`mmgen eval-caption` on a 128-px model (its default, mmgen-base) ranks scenes drawn at 128 px; it used to draw
    them at 64 and stop at the first with the captioner's size error."""
    from mmgen.eval.eval_caption import rank_scenes

    ranked = rank_scenes(pipe128, seed=3131, n_single=1, n_two=1)
    assert ranked["single"]["n"] == 1 and ranked["two"]["n"] == 1
    assert 0.0 <= ranked["two"]["top1"] <= 1.0
