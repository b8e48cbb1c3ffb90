from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmgen import captioning
from mmgen.captioning import (
    ObjectCaption,
    SceneCaption,
    caption,
    caption_errors,
    image_latents,
    noised_samples,
    rank_captions,
    sample_errors,
    search_shapes_caption,
)
from mmgen.cli import main
from mmgen.data.shapes import render_scene, shapes_annotation
from mmgen.eval.eval_caption import distractors, one_changes, score_caption
from mmgen.vocabulary import SHAPES_V1, Vocabulary, split_words

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "mmgen-base-64"  # 64-px scenes, as eval-caption
CAPTIONS = ["a red circle", "a blue square on the left", "a small green star at the top on a black background"]
ONE = {
    "background": "white",
    "objects": [
        {"color": "red", "shape": "circle", "size": "large", "position": "top left", "center": [14, 14], "side": 28}
    ],
}
TWO = {
    "background": "black",
    "objects": [
        {"color": "red", "shape": "circle", "size": "small", "position": "left"},
        {"color": "blue", "shape": "star", "size": "small", "position": "right"},
    ],
}


@pytest.fixture
def image(tiny_pipe):
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))


def test_the_canonical_wording():
    assert SceneCaption.from_labels(ONE).text == "a large red circle in the top left on a white background"
    assert (
        SceneCaption.from_labels(TWO).text
        == "a small red circle to the left of a small blue star on a black background"
    )
    assert SceneCaption((ObjectCaption("red", "circle"),)).text == "a red circle"  # parts left out, as in training
    labels, _ = shapes_annotation(0, 0)
    assert set(split_words(SceneCaption.from_labels(labels).text)) <= set(Vocabulary.for_model(SHIPPED).words)


def test_noise_is_fixed_and_follows_the_training_process(tiny_pipe):
    x0 = torch.randn(1, 4, 8, 8)
    x_t, t, target = noised_samples(tiny_pipe, x0, timesteps=(100, 900), num_noises=3)
    assert x_t.shape == (6, 4, 8, 8) and t.tolist() == [100, 100, 100, 900, 900, 900]
    a = tiny_pipe.scheduler.alphas_cumprod[t][:, None, None, None]
    eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()  # x_t = sqrt(a) x0 + sqrt(1 - a) eps
    torch.testing.assert_close(target, eps)  # an epsilon-prediction scheduler: the target is the noise
    torch.testing.assert_close(eps[:3], eps[3:])  # noise k at every timestep
    assert not torch.allclose(eps[0], eps[1])
    assert torch.equal(noised_samples(tiny_pipe, x0, timesteps=(100, 900), num_noises=3)[0], x_t)


def test_errors_are_the_dits_own_batched_or_not(tiny_pipe, image, monkeypatch):
    x0 = image_latents(tiny_pipe, image)
    errors = sample_errors(tiny_pipe, x0, CAPTIONS, timesteps=(200, 700), num_noises=2)  # (3 captions, 4 samples)
    x_t, t, target = noised_samples(tiny_pipe, x0, timesteps=(200, 700), num_noises=2)
    embeds, mask, _, _ = tiny_pipe.encode_prompt([CAPTIONS[1]] * 4, "cpu", do_classifier_free_guidance=False)
    with torch.no_grad():
        pred = tiny_pipe.transformer(x_t, t, embeds, mask).sample
    torch.testing.assert_close(errors[1], ((pred - target) ** 2).mean(dim=(1, 2, 3)), rtol=1e-4, atol=1e-7)
    monkeypatch.setattr(captioning, "BATCH_ROWS", 5)  # batches that cut across captions
    torch.testing.assert_close(sample_errors(tiny_pipe, x0, CAPTIONS, timesteps=(200, 700), num_noises=2), errors)


def test_model_work_comes_in_turns_another_job_can_come_between(tiny_pipe, image, monkeypatch):
    """An app runs each piece on its model thread: the image's latents, the captions' text, each DiT batch."""
    turns = []

    def turn(fn, *args):
        turns.append(fn.__name__)
        return fn(*args)

    monkeypatch.setattr(captioning, "BATCH_ROWS", 5)
    ranked = rank_captions(tiny_pipe, image, CAPTIONS, turn, timesteps=(200, 700), num_noises=2)  # 12 rows
    assert turns == ["image_latents", "_text_context"] + ["_batch_errors"] * 3
    assert ranked == rank_captions(tiny_pipe, image, CAPTIONS, timesteps=(200, 700), num_noises=2)


def test_rank_captions_is_sorted_paired_and_reproducible(tiny_pipe, image):
    ranked = rank_captions(tiny_pipe, image, CAPTIONS)
    assert sorted(c for c, _ in ranked) == sorted(CAPTIONS)
    assert [e for _, e in ranked] == sorted(e for _, e in ranked)
    assert tiny_pipe.rank_captions(image, CAPTIONS) == ranked
    # the same noises for every caption: a caption's score does not depend on the others scored with it
    alone = caption_errors(tiny_pipe, image, CAPTIONS[:1])
    assert float(alone[0]) == pytest.approx(dict(ranked)[CAPTIONS[0]], rel=1e-5)
    array = np.asarray(image)
    assert rank_captions(tiny_pipe, array, CAPTIONS) == ranked  # an (H, W, 3) uint8 array works too


@pytest.mark.parametrize(
    "bad, captions, message",
    [
        ("image.png", CAPTIONS, "PIL image"),
        (Image.new("RGB", (64, 64)), CAPTIONS, "32x32"),
        (None, [], "non-empty list"),
        (None, "a red circle", "non-empty list"),
        (None, ["a red circle", "  "], "prompt"),
    ],
)
def test_bad_input_is_a_clear_error(tiny_pipe, image, bad, captions, message):
    with pytest.raises(ValueError, match=message):
        rank_captions(tiny_pipe, image if bad is None else bad, captions)


def _fake_errors(truth: str):
    """A stand-in for the DiT: a caption's error is how many of its words and word pairs the truth lacks, plus how
    many of the truth's it lacks (pairs bind a colour to its shape, as the DiT must)."""

    def grams(text: str) -> set[str]:
        words = split_words(text)
        return set(words) | {f"{a} {b}" for a, b in zip(words, words[1:])}

    def errors(pipe, x0, captions, **noise):
        return torch.tensor([[float(len(grams(c) ^ grams(truth)))] for c in captions])

    return errors


@pytest.mark.parametrize("labels", [ONE, TWO])
def test_the_search_finds_a_caption_the_scorer_prefers(tiny_pipe, image, monkeypatch, labels):
    truth = SceneCaption.from_labels(labels)
    monkeypatch.setattr(captioning, "sample_errors", _fake_errors(truth.text))
    found = search_shapes_caption(tiny_pipe, image)
    assert len(found) == 2 and found[0][1] == 0.0 < found[1][1]
    assert score_caption(found[0][0], labels)["all"]
    assert {len(s.objects) for s, _ in found} == {1, 2}


def test_caption_follows_the_vocabulary(tiny_pipe, image, monkeypatch):
    with pytest.raises(ValueError, match="without a vocabulary"):
        caption(tiny_pipe, image)
    monkeypatch.setattr(captioning, "sample_errors", _fake_errors(SceneCaption.from_labels(ONE).text))
    shapes = Vocabulary.from_captions(["a red circle"], grammar=SHAPES_V1)
    assert caption(tiny_pipe, image, shapes) == SceneCaption.from_labels(ONE).text
    mine = Vocabulary.from_captions(["a cat on a sofa", "a large red circle on a white background", "a dog"])
    assert caption(tiny_pipe, image, mine) == "a large red circle on a white background"


def test_distractors_change_exactly_one_attribute():
    for labels in (ONE, TWO):
        truth = SceneCaption.from_labels(labels)
        chosen = distractors(truth, labels, np.random.default_rng(0))
        assert len(chosen) == 7 and len({c for _, c in chosen}) == 7 and truth not in {c for _, c in chosen}
        assert len({kind for kind, _ in chosen}) >= 5  # spread over the kinds
        for kind, c in chosen:
            changed = [a for a in ("background", "relation") if getattr(c, a) != getattr(truth, a)]
            changed += [
                f"{i}.{a}"
                for i, (x, y) in enumerate(zip(c.objects, truth.objects))
                for a in ("color", "shape", "size", "position")
                if getattr(x, a) != getattr(y, a)
            ]
            assert len(changed) == 1 and changed[0].endswith(kind.split(".")[-1])
            assert len({o.color for o in c.objects}) == len(c.objects)  # never two objects of one colour
            assert not score_caption(c, labels)["all"]  # every distractor is wrong
        assert distractors(truth, labels, np.random.default_rng(0)) == chosen
    false = one_changes(SceneCaption.from_labels(TWO), TWO)["relation"]  # red circle left of the blue star
    assert {c.relation for c in false} == {"right of", "above", "below"}


def test_score_caption_reads_attributes_and_either_order():
    truth = SceneCaption.from_labels(TWO)
    assert all(score_caption(truth, TWO).values())
    flipped = SceneCaption(truth.objects[::-1], "black", "right of")  # the same scene, said the other way
    assert score_caption(flipped, TWO)["all"]
    wrong = score_caption(truth.with_object(1, color="green"), TWO)
    assert not wrong["color"] and not wrong["all"] and wrong["background"]
    assert not score_caption(SceneCaption.from_labels(ONE), TWO)["count"]


def test_cli_ranks_a_captions_file(tiny_pipe, image, tmp_path, capsys):
    tiny_pipe.save_pretrained(tmp_path / "pipe")
    image.save(tmp_path / "i.png")
    (tmp_path / "c.txt").write_text("# captions\n" + "\n".join(CAPTIONS) + "\n\n")
    args = ["caption", str(tmp_path / "i.png"), "--model", str(tmp_path / "pipe")]
    assert main(args + ["--captions", str(tmp_path / "c.txt")]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert sorted(line.split("  ", 1)[1] for line in lines[:-1]) == sorted(CAPTIONS)
    assert lines[-1].startswith("the best caption takes away ") and "of the error the empty prompt leaves" in lines[-1]
    assert main(args) == 2 and "without a vocabulary" in (err := capsys.readouterr().err)
    assert "rank your own with --captions FILE" in err  # the command's way, not the Python function's
    # many captions: it says how many it ranks before the minutes they take
    (tmp_path / "many.txt").write_text("\n".join(f"a red circle {i}" for i in range(65)))
    assert main(args + ["--captions", str(tmp_path / "many.txt")]) == 0
    assert "ranking 65 captions (20 noised copies each through the DiT)" in capsys.readouterr().err
    # another size is read as the app reads it (it was refused: "this model reads 32x32 images"), said on stderr
    image.resize((64, 48)).save(tmp_path / "big.png")
    big = [
        "caption",
        str(tmp_path / "big.png"),
        "--model",
        str(tmp_path / "pipe"),
        "--captions",
        str(tmp_path / "c.txt"),
    ]
    assert main(big) == 0
    out, err = capsys.readouterr()
    assert "note: The image (64×48) was cut to its middle 48×48 square and resized to 32×32." in err
    assert sorted(line.split("  ", 1)[1] for line in out.splitlines()[1:-1]) == sorted(CAPTIONS)
    Image.new("RGB", (40, 8)).save(tmp_path / "thin.png")
    assert main(["caption", str(tmp_path / "thin.png"), "--model", str(tmp_path / "pipe")]) == 2
    assert "the image is 40×8: too small to read (at least 16 px a side)" in capsys.readouterr().err


@pytest.fixture(scope="module")
def shipped():
    from mmgen.pipeline import MMGenPipeline

    pipe = MMGenPipeline.from_pretrained(SHIPPED)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_shipped_model_reads_a_scene(shipped):
    """The true caption beats a wrong colour, shape or background, and its own words shuffled (a few seconds)."""
    truth = SceneCaption.from_labels(ONE)
    wrong = [
        truth.with_object(0, color="blue"),
        truth.with_object(0, shape="star"),
        SceneCaption(truth.objects, "black"),
    ]
    words = truth.text.split()
    shuffled = " ".join(np.random.default_rng(0).permutation(words))
    ranked = shipped.rank_captions(render_scene(ONE), [truth.text, shuffled] + [c.text for c in wrong])
    assert ranked[0][0] == truth.text
    blank = shipped.rank_captions(Image.new("RGB", (64, 64), (245, 245, 245)), [truth.text, wrong[2].text])
    assert blank[0][0] == truth.text  # an empty white image: the white background wins over the black one


def test_score_bars():
    from mmgen.charts import score_bars

    bars = score_bars(["best", "worse"], [0.2, 0.3], vmin=0.2, vmax=0.3, width=400, bar_height=16)
    assert bars.size == (400, 2 * 16 + 2)
    row = np.asarray(bars)[16 + 8]  # the second bar, full length: orange first, grey-blue second
    assert tuple(np.asarray(bars)[8, 0]) == (255, 140, 0) and tuple(row[90]) == (90, 110, 160)
    with pytest.raises(ValueError, match="labels"):
        score_bars(["a"], [0.1, 0.2], 0, 1)
    # captions longer than the chart's room wrap: cut at the edge, two that differ at their ends read the same
    long = ["a large red circle above a large blue square on a " + c + " background" for c in ("white", "black")]
    wrapped = np.asarray(score_bars(long, [0.2, 0.1], 0.0, 0.2, width=440))
    h = (wrapped.shape[0] - 2) // 2  # each row's height
    rows = wrapped[1 : 1 + h], wrapped[1 + h : 1 + 2 * h]
    assert h > 28  # taller than one line
    text = slice(440 // 4 + 60, 440)  # the captions, right of the bars and the numbers
    assert (rows[0][:, text] != rows[1][:, text]).any()  # "white" and "black" both written


def test_the_caption_chart_writes_each_captions_error_not_its_lead_over_the_worst():
    """The numbers beside the bars were each caption's lead over the worst: the worst read "0.0000", a perfect
    caption at a glance. The bars keep that lead; the text is the error."""
    from mmgen.app.caption import bar_chart
    from mmgen.charts import score_bars

    ranked = [("best", 0.05), ("worst", 0.09)]
    drawn = np.asarray(bar_chart(ranked))
    for text, want in (("0.0500", True), ("0.0000", False)):
        probe = np.asarray(score_bars(["best", "worst"], [0.04, 0.0], 0.0, 0.04, width=440, shown=[text, "0.0900"]))
        assert np.array_equal(drawn, probe) == want


def test_a_caption_of_nothing_the_model_knows_explains_nothing():
    """The Image -> text tab named two stars on a blank white canvas as confidently as a real scene: the share of
    the empty prompt's error the caption takes away tells them apart (and the tab warns under 5 %)."""
    from mmgen.captioning import explained
    from mmgen.data.shapes import shapes_sample
    from mmgen.pipeline import MMGenPipeline

    pipe = MMGenPipeline.from_pretrained(SHIPPED)
    scenes = [shapes_sample(1, 2000 + i) for i in range(4)]
    assert all(explained(pipe, s.image, s.caption) > 0.05 for s in scenes)
    blank = Image.new("RGB", (64, 64), "white")
    assert explained(pipe, blank, "a small pink star to the right of a small red star on a white background") < 0.05
    assert explained(pipe, scenes[0].image, scenes[1].caption) < explained(pipe, scenes[0].image, scenes[0].caption)


def test_a_model_blind_to_text_ranks_no_caption_first():
    """A DiT whose text reaches nothing (pooled text and cross-attention outputs zeroed) scores every caption alike:
    a tie must count against the truth, or the ranking's stable sort, truth first, gave it every scene."""
    from conftest import make_tiny_pipe

    from mmgen.eval.eval_caption import rank_scenes
    from mmgen.models.dit import DIT_PRESETS, DiT
    from mmgen.pipeline import MMGenPipeline

    tiny = make_tiny_pipe()
    dit = DiT(sample_size=16, in_channels=4, text_dim=32, scaling_factor=2.0, **DIT_PRESETS["tiny"])  # 64 px
    with torch.no_grad():
        for p in dit.proj_out.parameters():
            torch.nn.init.normal_(p, std=0.02)
        for p in [*dit.text_pool[-1].parameters(), *(q for b in dit.blocks for q in b.cross.out.parameters())]:
            p.zero_()
    blind = MMGenPipeline(**tiny.components | {"transformer": dit.eval()})
    ranked = rank_scenes(blind, seed=5, n_single=2, n_two=1)
    assert ranked["single"]["top1"] == ranked["two"]["top1"] == 0.0
    assert set(ranked["single"]["beaten_by"].values()) == {1.0}
