import pytest
import torch

from mmgen.models.dit import DIT_PRESETS, DiT, attention, sincos_2d


@pytest.fixture(params=[(0, False), (2, False), (0, True)], ids=["linear-text", "text-refiner", "joint-attention"])
def dit(request):
    refiner, joint = request.param
    return DiT(
        sample_size=8,
        in_channels=4,
        text_dim=16,
        text_refiner_layers=refiner,
        joint_attention=joint,
        **DIT_PRESETS["tiny"],
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


@pytest.mark.parametrize("joint", [False, True], ids=["cross-attention", "joint-attention"])
def test_prepared_text_context_gives_the_same_output(joint):
    """The sampler's shortcut (text keys/values, or the text stream's input, computed once per prompt) changes
    nothing in the result."""
    torch.manual_seed(0)
    model = _randomise(
        DiT(sample_size=8, in_channels=4, text_dim=16, joint_attention=joint, **DIT_PRESETS["tiny"]), std=0.1
    )
    x, t, text = torch.randn(3, 4, 8, 8), torch.tensor([1, 500, 999]), torch.randn(3, 5, 16)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    direct = model(x, t, text, mask).sample
    cached = model(x, t, text_context=model.prepare_text(text, mask)).sample
    assert torch.equal(direct, cached)
    assert not torch.equal(direct, model(x, t, text, torch.ones_like(mask)).sample)  # the mask matters
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


def test_joint_attention_updates_the_text_with_the_image():
    """In MM-DiT blocks the text stream attends to the image tokens: with the text stream's own weights perturbed
    in the first block, the image's output changes (its attention reads the updated text in later blocks), and
    two images give the same text different updates."""
    torch.manual_seed(0)
    model = _randomise(
        DiT(sample_size=8, in_channels=4, text_dim=16, joint_attention=True, **DIT_PRESETS["tiny"]).eval(), std=0.2
    )
    first, last = model.blocks[0], model.blocks[-1]
    assert set(first.out) == {"x", "text"} and set(last.out) == {"x"}  # the last block's text output is never read
    x, t, text = torch.randn(2, 4, 8, 8), torch.tensor([300, 300]), torch.randn(1, 5, 16).expand(2, 5, 16)
    context = model.prepare_text(text)
    seen = []
    hook = model.blocks[1].register_forward_pre_hook(lambda mod, args: seen.append(args[1]))  # text into block 1
    before = model(x, t, text_context=context).sample
    hook.remove()
    assert not torch.allclose(seen[0][0], seen[0][1], atol=1e-4)  # same prompt, different images
    with torch.no_grad():
        first.mlp["text"][-1].bias += 1.0
    assert not torch.allclose(before, model(x, t, text_context=context).sample, atol=1e-4)


def test_joint_attention_drops_padding_columns_without_changing_the_output():
    torch.manual_seed(0)
    model = _randomise(
        DiT(sample_size=8, in_channels=4, text_dim=16, joint_attention=True, **DIT_PRESETS["tiny"]).eval(), std=0.1
    )
    x, t, text = torch.randn(2, 4, 8, 8), torch.tensor([10, 900]), torch.randn(2, 7, 16)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0, 0]])
    context = model.prepare_text(text, mask)
    assert context.states.shape[1] == 4 and context.kv == []
    full = model(x, t, text_context=context).sample
    assert torch.allclose(full, model(x, t, text[:, :4], mask[:, :4]).sample, atol=1e-6)
    assert torch.allclose(full[1:], model(x[1:], t[1:], text_context=context.rows(slice(1, None))).sample, atol=1e-5)


def test_self_conditioning_starts_as_a_no_op_from_the_same_weights():
    """A `self_condition` DiT adds a zero-initialised layer that reads the previous x0 estimate: the other weights
    are those the same seed gives without it, and until that layer learns the estimate changes nothing."""
    torch.manual_seed(0)
    plain = DiT(sample_size=8, in_channels=4, text_dim=16, **DIT_PRESETS["tiny"])
    torch.manual_seed(0)
    sc = DiT(sample_size=8, in_channels=4, text_dim=16, self_condition=True, **DIT_PRESETS["tiny"]).eval()
    state = sc.state_dict()
    assert set(state) - set(plain.state_dict()) == {"self_cond_embed.weight", "self_cond_embed.bias"}
    assert all(torch.equal(v, state[k]) for k, v in plain.state_dict().items())
    x, t, text = torch.randn(2, 4, 8, 8), torch.tensor([5, 900]), torch.randn(2, 5, 16)
    torch.nn.init.normal_(sc.proj_out.weight, std=0.05)
    base = sc(x, t, text).sample
    assert torch.equal(base, sc(x, t, text, self_cond=torch.randn_like(x)).sample)
    torch.nn.init.normal_(sc.self_cond_embed.weight, std=0.05)
    assert torch.equal(base, sc(x, t, text, self_cond=torch.zeros_like(x)).sample)  # None means zeros
    assert not torch.allclose(base, sc(x, t, text, self_cond=torch.randn_like(x)).sample, atol=1e-4)


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
