import json
import logging
from pathlib import Path

import pytest
import torch

from mmgen.models.dit import DIT_PRESETS, DiT, attention, sincos_2d

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "mmgen-base" / "transformer"


@pytest.fixture(params=[0, 2], ids=["linear-text", "text-refiner"])
def dit(request):
    return DiT(
        sample_size=8, in_channels=4, text_dim=16, text_refiner_layers=request.param, **DIT_PRESETS["tiny"]
    ).eval()


def _randomise(model, std=0.05):
    """Leave the zero initialisation, so that every path reaches the output."""
    for p in model.parameters():
        torch.nn.init.normal_(p, std=std)
    return model


def test_output_shape_matches_input(dit):
    x = torch.randn(3, 4, 8, 8)
    out = dit(x, torch.tensor([1, 500, 999]), torch.randn(3, 5, 16), torch.ones(3, 5)).sample
    assert out.shape == x.shape


def test_zero_initialised_dit_predicts_zero(dit):
    out = dit(torch.randn(2, 4, 8, 8), torch.tensor([3, 700]), torch.randn(2, 5, 16)).sample
    assert torch.equal(out, torch.zeros_like(out))


def test_text_mask_hides_padding(dit):
    _randomise(dit)
    x, t, text = torch.randn(1, 4, 8, 8), torch.tensor([100]), torch.randn(1, 6, 16)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0]])
    a = dit(x, t, text, mask).sample
    text2 = text.clone()
    text2[:, 3:] = torch.randn(1, 3, 16) * 10  # change only the padded positions
    assert torch.allclose(a, dit(x, t, text2, mask).sample, atol=1e-5)
    assert not torch.allclose(a, dit(x, t, text2).sample, atol=1e-3)


def test_wrong_grid_size_is_a_clear_error(dit):
    with pytest.raises(ValueError, match="8x8 latent grid"):
        dit(torch.randn(1, 4, 16, 16), torch.tensor([1]), torch.randn(1, 5, 16))


def test_sincos_positions_are_distinct():
    pos = sincos_2d(32, 4, 4)
    assert pos.shape == (16, 32) and torch.cdist(pos, pos).fill_diagonal_(1).min() > 0.1


def test_save_load_round_trip(dit, tmp_path):
    dit.save_pretrained(tmp_path / "t")
    loaded = DiT.from_pretrained(tmp_path / "t")
    for k, v in dit.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])


def test_prepared_text_context_gives_the_same_output():
    """The sampler's shortcut (text keys and values computed once per prompt) changes nothing in the result."""
    torch.manual_seed(0)
    model = _randomise(DiT(sample_size=8, in_channels=4, text_dim=16, **DIT_PRESETS["tiny"]), std=0.1)
    x, t, text = torch.randn(3, 4, 8, 8), torch.tensor([1, 500, 999]), torch.randn(3, 5, 16)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    direct = model(x, t, text, mask).sample
    cached = model(x, t, text_context=model.prepare_text(text, mask)).sample
    assert torch.equal(direct, cached)
    assert not torch.equal(direct, model(x, t, text, torch.ones_like(mask)).sample)  # the mask matters
    assert torch.equal(
        direct[1:], model(x[1:], t[1:], text_context=model.prepare_text(text, mask).rows(slice(1, None))).sample
    )
    with pytest.raises(ValueError, match="text_context"):
        model(x, t)


def test_text_refiner_reads_word_order():
    """Cross-attention alone treats the text states as a set: swapping two of them changes nothing. The
    refiner's learned positions and self-attention make each state depend on where its word sits."""
    torch.manual_seed(0)
    x, t, text = torch.randn(1, 4, 8, 8), torch.tensor([300]), torch.randn(1, 5, 16)
    swapped = text[:, [0, 2, 1, 3, 4]]
    plain = _randomise(DiT(sample_size=8, in_channels=4, text_dim=16, **DIT_PRESETS["tiny"]).eval(), std=0.2)
    assert (plain(x, t, text).sample - plain(x, t, swapped).sample).abs().max() < 1e-5
    refined = _randomise(
        DiT(sample_size=8, in_channels=4, text_dim=16, text_refiner_layers=1, **DIT_PRESETS["tiny"]).eval(), std=0.2
    )
    assert (refined(x, t, text).sample - refined(x, t, swapped).sample).abs().max() > 1e-2


def test_text_refiner_rejects_more_tokens_than_its_positions():
    model = DiT(
        sample_size=8, in_channels=4, text_dim=16, text_refiner_layers=1, max_text_tokens=4, **DIT_PRESETS["tiny"]
    )
    with pytest.raises(ValueError, match="at most 4 text tokens"):
        model(torch.randn(1, 4, 8, 8), torch.tensor([1]), torch.randn(1, 5, 16))


def test_attention_is_computed_in_float32_when_training_under_cpu_autocast():
    """bf16 autocast would send attention to PyTorch's bf16 CPU kernel (slower there for the backward pass; see
    `attention`): with gradients on, ours runs the float32 kernel on the same bf16 inputs, returns bf16, and passes
    gradients back in bf16; without them (sampling) it keeps the bf16 kernel."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 8, 16, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    mask = torch.ones(2, 1, 1, 8, dtype=torch.bool)
    mask[1, ..., 5:] = False
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = attention(q, k, v, mask)
    want = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
    assert y.dtype == torch.bfloat16
    assert torch.equal(y, want.bfloat16())
    y.float().sum().backward()
    assert q.grad.dtype == torch.bfloat16 and q.grad.abs().sum() > 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # sampling: autocast's own bf16 kernel
        plain = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        assert torch.equal(attention(q, k, v, mask), plain) and not torch.equal(plain, y)
    x = torch.randn(2, 3, 8, 16)  # float32 without autocast: the kernel itself
    assert torch.equal(
        attention(x, x, x, mask), torch.nn.functional.scaled_dot_product_attention(x, x, x, attn_mask=mask)
    )


class _ConfigWarnings(logging.Handler):
    """Collects diffusers' warnings about config keys that the class does not take (diffusers' loggers do not
    propagate to the root logger, so pytest's caplog would miss them)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        if "not expected" in record.getMessage():
            self.messages.append(record.getMessage())


@pytest.fixture
def config_warnings():
    handler, logger = _ConfigWarnings(), logging.getLogger("diffusers.configuration_utils")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


@pytest.mark.skipif(not (SHIPPED / "config.json").exists(), reason="no shipped generator yet")
def test_the_shipped_transformer_loads_and_round_trips_without_config_warnings(tmp_path, config_warnings):
    """The shipped config holds exactly DiT's arguments: a key that DiT lost (e.g. `joint_attention`) would
    make every user's load warn. Saved again, it loads to the same weights, still without a warning."""
    shipped = DiT.from_pretrained(SHIPPED)
    assert config_warnings == []
    shipped.save_pretrained(tmp_path / "t")
    loaded = DiT.from_pretrained(tmp_path / "t")
    assert config_warnings == []
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in shipped.state_dict().items())
    keys = [
        {k for k in json.loads((d / "config.json").read_text()) if not k.startswith("_")}
        for d in (SHIPPED, tmp_path / "t")
    ]
    assert keys[0] == keys[1]  # the shipped file holds what DiT writes today, no more, no less


def test_a_config_key_dit_does_not_take_is_warned_about(tmp_path, config_warnings):
    """The warning the test above looks for is real: a saved config with a lost key triggers it."""
    DiT(sample_size=8, in_channels=4, text_dim=16, **DIT_PRESETS["tiny"]).save_pretrained(tmp_path / "t")
    config = tmp_path / "t" / "config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {"joint_attention": False}))
    DiT.from_pretrained(tmp_path / "t")
    assert len(config_warnings) == 1 and "joint_attention" in config_warnings[0]


def test_a_grid_that_does_not_split_into_patches_is_refused_when_built():
    """It built, and failed at the first forward with an einops message (after minutes of encoding, in training)."""
    with pytest.raises(ValueError, match="18x18 latent grid does not split into 4x4 patches"):
        DiT(sample_size=18, in_channels=4, text_dim=16, patch_size=4, **DIT_PRESETS["tiny"])
