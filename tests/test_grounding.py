import numpy as np
import pytest
import torch

from mmgen.data.shapes import shape_coverage, shapes_annotation, shapes_sample
from mmgen.models.dit import DiT
from mmgen.models.text_encoder import MAX_TOKENS, load_text_encoder
from mmgen.training.grounding import (
    GroundingTargets,
    grounding_loss,
    object_patch_masks,
    shapes_grounding,
    word_token_masks,
)


@pytest.fixture(scope="module")
def tokenizer():
    return load_text_encoder()[0]


def _marked(tokenizer, caption, mask):
    ids = tokenizer(caption, padding="max_length", max_length=MAX_TOKENS)["input_ids"]
    return [tokenizer.convert_ids_to_tokens(ids[j]) for j in np.flatnonzero(mask.numpy())]


def test_word_masks_mark_each_objects_colour_and_shape_pieces_in_caption_order(tokenizer):
    caption = "a picture of a cyan circle to the left of a small red circle on a white background"
    objects = [{"color": "cyan", "shape": "circle"}, {"color": "red", "shape": "circle"}]
    words = word_token_masks(tokenizer, [caption], [objects], MAX_TOKENS)[0]  # (W, L)
    assert [_marked(tokenizer, caption, w) for w in words] == [["cy", "##an"], ["circle"], ["red"], ["circle"]]
    assert not (words[1] & words[3]).any()  # each object its own "circle"

    single = word_token_masks(
        tokenizer, ["a large green star on the left"], [[{"color": "green", "shape": "star"}]], MAX_TOKENS
    )[0]
    assert single[2:].sum() == 0 and single[:2].sum(1).tolist() == [1, 1]
    with pytest.raises(ValueError, match="does not name"):
        word_token_masks(tokenizer, ["a red star"], [[{"color": "red", "shape": "cross"}]], MAX_TOKENS)


def test_object_masks_are_the_patches_its_box_covers_in_the_dits_row_major_order():
    obj = {"center": [15, 13.5], "side": 16}  # box x 7..23, y 5.5..21.5 on 8-pixel patches
    regions = object_patch_masks([[obj]], grid=8)[0]  # (O, T)
    # rows cover 2.5/8, 1, 5.5/8 and columns 1/8, 1, 7/8 of a patch; area shares of at least 1/10:
    want = np.zeros((8, 8), dtype=bool)
    want[0:3, 1:3] = True
    want[1, 0] = True  # 1 x 1/8; its neighbours above and below (2.5/64, 5.5/64) stay out
    assert regions.shape == (2, 64) and regions[0].numpy().reshape(8, 8).tolist() == want.tolist()
    assert not regions[1].any()  # no second object


def test_regions_hold_the_rendered_objects_and_words_come_from_the_real_captions(tokenizer):
    targets = shapes_grounding(seed=3, n=40, tokenizer=tokenizer, grid=8, max_tokens=MAX_TOKENS)
    for i in range(40):
        sample = shapes_sample(3, i)
        assert shapes_annotation(3, i) == (sample.labels, sample.caption)
        for o, obj in enumerate(sample.labels["objects"]):
            cov = shape_coverage(obj["shape"], *obj["center"], obj["side"])  # (64, 64) the drawn object
            per_patch = cov.reshape(8, 8, 8, 8).sum(axis=(1, 3)).reshape(64)
            assert per_patch[targets.regions[i, o].numpy()].sum() >= 0.9 * cov.sum()
            colour, shape = (_marked(tokenizer, sample.caption, w) for w in targets.words[i, 2 * o : 2 * o + 2])
            assert "".join(t.removeprefix("##") for t in colour) == obj["color"] and shape == [obj["shape"]]


def _targets():
    words = torch.zeros(2, 4, 6, dtype=torch.bool)
    words[:, 0, 1] = words[:, 1, 2] = True  # object 0: tokens 1 (colour) and 2 (shape); no second object
    regions = torch.zeros(2, 2, 4, dtype=torch.bool)
    regions[:, 0, 0] = True  # object 0 covers patch 0 of 4
    return GroundingTargets(words, regions)


def test_grounding_loss_zero_on_the_object_known_when_uniform_and_dropped_captions_ignored():
    targets, keep = _targets(), torch.tensor([True, True])
    on_object = torch.full((2, 4, 6), 1 / 6)
    on_object[:, 1:, 1:3] = 0.0  # only patch 0 attends to the object's words
    assert grounding_loss(on_object, targets, keep) == 0
    uniform = torch.full((2, 4, 6), 1 / 6)
    torch.testing.assert_close(grounding_loss(uniform, targets, keep), torch.tensor((1 - 1 / 4) ** 2))
    mixed = torch.stack([on_object[0], uniform[1]])
    assert grounding_loss(mixed, targets, torch.tensor([True, False])) == 0  # the dropped caption counts for nothing
    assert grounding_loss(mixed, targets, torch.tensor([False, False])) == 0  # nothing to ground


def test_dit_returns_cross_attention_maps_that_train_without_changing_the_prediction():
    torch.manual_seed(0)
    dit = DiT(
        sample_size=8,
        in_channels=4,
        hidden_size=32,
        depth=2,
        num_heads=2,
        text_dim=16,
        text_refiner_layers=1,
        max_text_tokens=6,
    )
    for block in dit.blocks:  # a trained-like DiT: cross-attention and outputs not zero
        torch.nn.init.normal_(block.cross.out.weight, std=0.1)
    torch.nn.init.normal_(dit.proj_out.weight, std=0.1)
    x, t, text = torch.randn(2, 4, 8, 8), torch.tensor([10, 500]), torch.randn(2, 6, 16)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    out = dit(x, t, text, mask, return_cross_attention=True)
    torch.testing.assert_close(out.sample, dit(x, t, text, mask).sample)
    assert dit(x, t, text, mask).cross_attention is None
    maps = out.cross_attention  # (B, T, L)
    assert maps.shape == (2, 16, 6) and (maps[0, :, 4:] == 0).all()
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 16))
    _, tuple_maps = dit(x, t, text, mask, return_cross_attention=True, return_dict=False)
    torch.testing.assert_close(tuple_maps, maps)

    # the loss reaches the text refiner and the image queries, and a step of gradient descent lowers it
    words = torch.zeros(2, 4, 6, dtype=torch.bool)
    words[:, 0, 1] = words[:, 1, 2] = True
    regions = torch.zeros(2, 2, 16, dtype=torch.bool)
    regions[:, 0, :4] = True
    targets, keep = GroundingTargets(words, regions), torch.tensor([True, True])
    opt = torch.optim.SGD(dit.parameters(), lr=0.5)
    before = grounding_loss(maps, targets, keep)
    before.backward()
    assert dit.text_refiner[0].attn.q.weight.grad.abs().sum() > 0 and dit.blocks[0].cross.q.weight.grad.abs().sum() > 0
    opt.step()
    assert grounding_loss(dit(x, t, text, mask, return_cross_attention=True).cross_attention, targets, keep) < before


def test_joint_attention_has_no_cross_attention_maps():
    dit = DiT(
        sample_size=8,
        in_channels=4,
        hidden_size=32,
        depth=2,
        num_heads=2,
        text_dim=16,
        joint_attention=True,
        max_text_tokens=6,
    )
    with pytest.raises(ValueError, match="joint attention"):
        dit(torch.randn(1, 4, 8, 8), torch.tensor([1]), torch.randn(1, 6, 16), return_cross_attention=True)
