import numpy as np
import pytest
import torch
from einops import rearrange
from PIL import Image

from mmgen import AttentionRecorder
from mmgen.attention import cross_attention_probs, peak, prompt_words
from mmgen.cli import main

PROMPT = "a small cyan star on the left"


def _generate(pipe, prompt=PROMPT, **kwargs):
    kwargs = {"num_inference_steps": 4, "generator": torch.Generator().manual_seed(0), **kwargs}
    with AttentionRecorder(pipe, prompt) as rec:
        out = pipe(prompt, **kwargs)
    return rec, out


def test_words_merge_pieces_and_leave_out_special_tokens(tiny_pipe):
    words = prompt_words(tiny_pipe.tokenizer, "a cyan circle, a cyan square")
    assert [w for w, _ in words] == ["a", "cyan", "circle", ",", "a (2)", "cyan (2)", "square"]
    assert len(words[1][1]) == 2  # "cy" + "##an"
    assert words[0][1] == [1]  # position 0 is [CLS]


def test_recomputed_probabilities_are_the_attention_the_model_used(tiny_pipe):
    """The recorder recomputes softmax(q k^T) from the hooked inputs: with the values, it must give the module's
    own output, padding masked."""
    cross = tiny_pipe.transformer.blocks[0].cross
    embeds, mask, _, _ = tiny_pipe.encode_prompt(["a red circle", "a blue square below a star"], "cpu", 1, False)
    context = tiny_pipe.transformer.prepare_text(embeds, mask)
    x = torch.randn(2, 16, cross.q.in_features)
    probs = cross_attention_probs(cross, x, context.kv[0][0], context.mask)  # (B, nh, T, L)
    assert torch.allclose(probs.sum(-1), torch.ones(()), atol=1e-5)
    assert float(probs[0, ..., 5:].abs().max()) == 0.0  # "a red circle" has 5 tokens; the rest is padding
    y = cross.out(rearrange(probs @ context.kv[0][1], "b h t d -> b t (h d)"))
    torch.testing.assert_close(y, cross(x, mask=context.mask, kv=context.kv[0]), rtol=1e-4, atol=1e-5)


def test_word_maps_at_image_resolution_in_prompt_order(tiny_pipe):
    rec, out = _generate(tiny_pipe)
    maps = rec.word_maps()
    assert list(maps) == ["a", "small", "cyan", "star", "on", "the", "left"]
    side = out.images[0].width
    assert all(m.shape == (side, side) and m.dtype == np.float32 for m in maps.values())
    total = sum(maps.values())
    assert total.min() > 0 and total.max() < 1  # shares of the attention; [CLS] and [SEP] hold the rest
    assert len(rec.steps) == 4 and rec.timesteps == [float(t) for t in tiny_pipe.scheduler.timesteps]
    assert 0 <= peak(maps["star"])[0] < side


def test_the_average_is_the_mean_of_the_steps(tiny_pipe):
    rec, _ = _generate(tiny_pipe)
    per_step = [rec.word_maps(step=k)["star"] for k in range(4)]
    assert not np.allclose(per_step[0], per_step[-1])
    np.testing.assert_allclose(np.mean(per_step, axis=0), rec.word_maps()["star"], rtol=1e-5, atol=1e-7)


def test_only_the_conditional_half_is_read(tiny_pipe):
    """A guided and an unguided run from the same noise feed the DiT the same conditional rows at step 0: their
    first-step maps match exactly, which they would not if the null prompt's rows were read. Then guidance moves
    the latents, and the maps part."""
    for block in tiny_pipe.transformer.blocks:  # wake the zero-initialised layers, so that the text matters
        for layer in (block.ada[-1], block.cross.out):
            torch.nn.init.normal_(layer.weight, std=0.2)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    guided, _ = _generate(tiny_pipe, latents=latents, guidance_scale=5.0, guidance_interval=None)
    alone, _ = _generate(tiny_pipe, latents=latents, guidance_scale=1.0)
    for word, m in guided.word_maps(step=0).items():
        np.testing.assert_allclose(m, alone.word_maps(step=0)[word], rtol=1e-5, atol=1e-7)
    assert not np.allclose(guided.word_maps(step=1)["star"], alone.word_maps(step=1)["star"])


def test_candidate_runs_are_left_out_and_the_model_is_untouched(tiny_pipe):
    plain = tiny_pipe(PROMPT, num_inference_steps=4, num_candidates=3, generator=torch.Generator().manual_seed(0))
    rec, out = _generate(tiny_pipe, num_candidates=3)  # the candidates' own runs go through the same DiT first
    assert torch.equal(out.tokens, plain.tokens)  # recording changes nothing
    assert len(rec.steps) == 4
    assert not tiny_pipe.transformer._forward_pre_hooks
    assert not any(b.cross._forward_hooks for b in tiny_pipe.transformer.blocks)


def test_a_batch_and_a_chosen_run(tiny_pipe):
    prompts = ["a red circle", PROMPT]
    with AttentionRecorder(tiny_pipe, prompts) as rec:
        tiny_pipe(prompts, num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    assert list(rec.word_maps(index=0)) == ["a", "red", "circle"]
    assert list(rec.word_maps(index=1)) == ["a", "small", "cyan", "star", "on", "the", "left"]
    run = tiny_pipe.stepwise(PROMPT, 3, num_candidates=1, generator=torch.Generator().manual_seed(0))
    rec = AttentionRecorder(tiny_pipe, PROMPT, run=run)
    with rec:  # as the app steps a run: one `with` per click, the record kept between them
        run.step()
        tiny_pipe("a red circle", num_inference_steps=2, num_candidates=1)  # another run, not recorded
    with rec:
        run.step()
    assert len(rec.steps) == 2 and "star" in rec.word_maps()


def test_clear_errors(tiny_pipe):
    rec = AttentionRecorder(tiny_pipe, PROMPT)
    with pytest.raises(ValueError, match="nothing recorded"):
        rec.word_maps()
    rec, _ = _generate(tiny_pipe)
    with pytest.raises(ValueError, match="step"):
        rec.word_maps(step=4)
    with pytest.raises(ValueError, match="index"):
        rec.word_maps(index=1)
    wrong = AttentionRecorder(tiny_pipe, "a red circle")
    with wrong:
        tiny_pipe(PROMPT, num_inference_steps=2, num_candidates=1)
    with pytest.raises(ValueError, match="text tokens"):
        wrong.word_maps()


def test_generate_writes_the_word_grid(tiny_pipe, tmp_path, capsys):
    tiny_pipe.save_pretrained(tmp_path / "pipe")
    args = ["generate", "a red circle", "--model", str(tmp_path / "pipe"), "--out", str(tmp_path / "i.png")]
    assert main(args + ["--steps", "2", "--attention", str(tmp_path / "words.png")]) == 0
    grid = Image.open(tmp_path / "words.png")
    assert grid.mode == "RGB" and grid.width > 4 * 64  # the image and three words, 64 px tiles
    assert "2 steps" in capsys.readouterr().out


def test_word_map_pictures():
    from mmgen.viz import overlay_heatmap, word_map_grid, word_map_strip

    image = Image.new("RGB", (32, 32), (20, 20, 20))
    heat = np.zeros((32, 32), np.float32)
    heat[4:8, 20:24] = 0.5
    over = overlay_heatmap(image, heat, 0.0, 0.5)
    assert over.size == (32, 32) and sum(over.getpixel((22, 6))) > sum(over.getpixel((2, 2))) + 100  # hot spot
    assert overlay_heatmap(image, heat[::4, ::4], 0.0, 0.5).size == (32, 32)  # a patch-grid map is resized
    grid = word_map_grid(image, {"red": heat, "circle": heat / 2, "a": heat * 0}, scale=2, cols=2)
    assert grid.mode == "RGB" and grid.width == 2 * (64 + 2) + 2 and grid.height > 2 * 64  # 4 tiles in 2 rows
    strip = word_map_strip([image] * 3, [heat] * 3, 0.0, 0.5, scale=1)
    assert strip.width > 3 * 32
    with pytest.raises(ValueError, match="one map per frame"):
        word_map_strip([image] * 3, [heat] * 2, 0.0, 0.5)
    labelled = word_map_strip([image] * 3, [heat] * 3, 0.0, 0.5, scale=2, labels=["step 1", "step 2", "step 3"])
    assert labelled.height == strip.height + 32 + 18  # each frame 2x, over its step's line
    band = np.asarray(labelled)[-18:-2, 2 : 2 + 64]
    assert (band < 128).any()  # the label is written
    two_rows = word_map_strip([image] * 4, [heat] * 4, 0.0, 0.5, labels=["s"] * 4, rows=2, top=10)
    one_row = word_map_strip([image] * 2, [heat] * 2, 0.0, 0.5, labels=["s"] * 2)
    assert two_rows.size == (one_row.width, 10 + 2 * one_row.height)  # readable when shown: 5 a row, not 10
    assert (np.asarray(two_rows)[:10] == 255).all()  # room for gradio's label above the frames


def test_a_heat_maps_key_spans_its_scale():
    """The colour bar under a word's map runs from the ramp's dark end (0) to its bright end (the word's most)."""
    from mmgen.charts import with_colour_bar
    from mmgen.viz import heat_colours

    keyed = np.asarray(with_colour_bar(Image.new("RGB", (200, 100), (255, 255, 255)), 0.0, 0.25))
    assert keyed.shape == (126, 200, 3)
    row = keyed[100 + 13]  # the bar's middle row
    ramp = heat_colours(np.array([0.0, 0.25]), 0.0, 0.25)
    near = [[x for x in range(200) if np.abs(row[x].astype(int) - c).max() <= 6] for c in ramp]
    assert near[0] and near[1] and max(near[0]) < 50 and min(near[1]) > 150  # dark at the left, bright at the right


@pytest.mark.parametrize("model", ["mmgen-base-64", "mmgen-base"])
def test_on_the_shipped_models_the_colour_word_lands_on_its_object(model):
    """`mmgen eval-attention` measures this over 100 prompts (docs/captioning.md); here one image (a few seconds).
    At 128 px the judge's box (64-px units) is put in the image's pixels first: compared as it was, every word read
    as missing its object."""
    from pathlib import Path

    from mmgen.eval.eval_attention import in_box, in_image_pixels
    from mmgen.eval.judge import read_scene
    from mmgen.pipeline import MMGenPipeline

    pipe = MMGenPipeline.from_pretrained(Path(__file__).resolve().parents[1] / "assets" / model)  # as eval-attention
    pipe.set_progress_bar_config(disable=True)
    prompt = "a large red circle in the bottom right on a white background"  # far from (0, 0) at any scale
    rec, out = _generate(pipe, prompt, num_inference_steps=30, num_candidates=1)
    image = out.images[0]
    obj = in_image_pixels(read_scene(image)["objects"][0], image.width)
    maps = rec.word_maps()
    assert maps["red"].shape == (image.height, image.width)
    assert obj["color"] == "red" and in_box(peak(maps["red"]), obj)
    x, y = (int(v) for v in obj["center"])
    assert maps["red"][y, x] > 5 * maps["white"][y, x]  # the object is read through its colour word


def test_in_box_is_the_judges_box_grown_by_the_margin():
    from mmgen.eval.eval_attention import in_box

    obj = {"center": [48, 48], "side": 16}  # pixels 40..55 on each axis
    assert in_box((40, 55), obj) and in_box((47, 47), obj)
    assert not in_box((39, 48), obj) and not in_box((48, 56), obj) and not in_box((0, 0), obj)
    assert in_box((37, 58), obj, margin=3) and not in_box((36, 48), obj, margin=3)


def test_eval_attention_with_no_object_found_says_so_rather_than_writing_nan(tiny_pipe, tmp_path, capsys):
    """A model whose images hold no object the judge finds left every mean NaN, written into the JSON (not JSON)."""
    from mmgen.cli import main

    tiny_pipe.save_pretrained(tmp_path / "pipe")  # random weights: no object in its image
    out = tmp_path / "attention.json"
    assert main(["eval-attention", "--model", str(tmp_path / "pipe"), "--n", "1", "--out", str(out)]) == 2
    assert "found no object in any of the 1 images" in capsys.readouterr().err and not out.exists()
