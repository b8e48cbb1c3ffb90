"""The generator's scoring, checked on rendered ground truth: a perfect generator must score 100 %."""

import json
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pytest

from mmgen.cli import main
from mmgen.data.shapes import POSITIONS, SHAPES, SIZES, render_scene
from mmgen.eval.accuracy import Sampling, evaluate
from mmgen.eval.judge import read_scene
from mmgen.eval.prompts import (
    FREE_PROMPTS,
    HELDOUT_REWORDING,
    TUNE_FREE_PROMPTS,
    TUNE_REWORDING,
    PromptSets,
    single_prompts,
    two_object_prompts,
)
from mmgen.eval.report import format_extra_objects, format_shape_errors
from mmgen.eval.scoring import extra_objects, score_single, score_two, shape_errors, two_object_size_shares
from mmgen.settings import (
    DEFAULT_CODEBOOK_SNAP,
    DEFAULT_GUIDANCE_INTERVAL,
    DEFAULT_GUIDANCE_SCALE,
    DEFAULT_NUM_CANDIDATES,
    DEFAULT_STEPS,
)


def _render(item):
    objects = [
        dict(o, size=o.get("size", "small"), center=list(POSITIONS[o["position"]]), side=SIZES[o.get("size", "small")])
        for o in item["objects"]
    ]
    return render_scene({"background": item["background"], "objects": objects})


def test_single_object_scoring_is_perfect_on_ground_truth():
    items = single_prompts(60, np.random.default_rng(0))
    assert all(score_single(read_scene(_render(it)), it)["all"] for it in items)


def test_paraphrases_differ_from_the_template():
    for rewording in (HELDOUT_REWORDING, TUNE_REWORDING):
        items = single_prompts(30, np.random.default_rng(0), rewording)
        assert not any(" on a " in it["prompt"] and " background" in it["prompt"] for it in items)


def test_two_object_scoring_is_perfect_on_ground_truth():
    items = two_object_prompts(40, np.random.default_rng(1))
    assert all(score_two(read_scene(_render(it)), it)["all"] for it in items)


def test_a_two_object_scene_on_the_wrong_background_fails():
    """score_two left the background out of "all": the right pair on white passed a prompt asking for black."""
    from mmgen.data.shapes import BACKGROUNDS

    for item in two_object_prompts(6, np.random.default_rng(3)):
        colors = {o["color"] for o in item["objects"]}
        other = next(b for b in BACKGROUNDS if b != item["background"] and b not in colors)
        score = score_two(read_scene(_render(dict(item, background=other))), item)
        assert score["shapes"] and score["relation"] and not score["background"] and not score["all"]


def test_scoring_notices_a_wrong_scene():
    item = single_prompts(1, np.random.default_rng(2))[0]
    wrong = dict(
        item, objects=[dict(item["objects"][0], shape="star" if item["objects"][0]["shape"] != "star" else "circle")]
    )
    assert not score_single(read_scene(_render(wrong)), item)["shape"]


def test_scoring_notices_a_wrong_size_and_a_reversed_relation():
    for item in single_prompts(8, np.random.default_rng(4)):
        obj = item["objects"][0]
        resized = dict(item, objects=[dict(obj, size="small" if obj["size"] == "large" else "large")])
        score = score_single(read_scene(_render(resized)), item)
        assert score["color"] and score["shape"] and not score["size"] and not score["all"]
    for item in two_object_prompts(8, np.random.default_rng(7)):
        a, b = item["objects"]
        swapped = dict(item, objects=[dict(a, position=b["position"]), dict(b, position=a["position"])])
        score = score_two(read_scene(_render(swapped)), item)
        assert score["colors"] and score["shapes"] and not score["relation"] and not score["all"]


def test_an_object_drawn_twice_fails_all_but_not_its_attributes():
    item = single_prompts(1, np.random.default_rng(5))[0]
    obj = item["objects"][0]
    other = next(
        p
        for p in POSITIONS
        if p != obj["position"]
        and abs(POSITIONS[p][0] - POSITIONS[obj["position"]][0]) + abs(POSITIONS[p][1] - POSITIONS[obj["position"]][1])
        > 30
    )
    twice = dict(item, objects=[obj, dict(obj, size="small", position=other)])
    read = read_scene(_render(twice))
    score = score_single(read, item)
    assert score["color"] and score["background"] and not score["all"]

    def far(p, q):  # two cells apart along x or y: the copies' boxes can not touch
        return max(abs(POSITIONS[p][0] - POSITIONS[q][0]), abs(POSITIONS[p][1] - POSITIONS[q][1])) >= 36

    pair, spare = next(
        (it, p)
        for it in two_object_prompts(20, np.random.default_rng(6))
        for p in POSITIONS
        if all(far(p, o["position"]) for o in it["objects"])
    )
    a, b = pair["objects"]
    three = dict(pair, objects=[a, b, dict(a, position=spare)])
    read = read_scene(_render(three))
    score = score_two(read, pair)
    assert score["colors"] and score["shapes"] and score["relation"] and not score["count"] and not score["all"]
    assert extra_objects([(read_scene(_render(twice)), item)]) == {
        "more objects than named": 1.0,
        "a named object drawn twice": 1.0,
    }
    # a scene with one object twice and the other missing has the right count, but a duplicate
    a_twice = dict(pair, objects=[a, dict(a, position=spare)])
    pairs = [(read, pair), (read_scene(_render(pair)), pair), (read_scene(_render(a_twice)), pair)]
    assert extra_objects(pairs) == {"more objects than named": 1 / 3, "a named object drawn twice": 2 / 3}
    assert "drawn twice 66.7%" in format_extra_objects({"two": extra_objects(pairs)})


def test_shape_errors_tell_binding_errors_from_blobs_and_misses():
    single = single_prompts(12, np.random.default_rng(3))
    two = [
        it
        for it in two_object_prompts(20, np.random.default_rng(4))
        if it["objects"][0]["shape"] != it["objects"][1]["shape"]
    ][:3]
    assert len(two) == 3
    a, b = two[1]["objects"]
    swapped = dict(two[1], objects=[dict(a, shape=b["shape"]), dict(b, shape=a["shape"])])  # the shapes swapped
    c, d = two[2]["objects"]
    blob = dict(two[2], objects=[dict(c, shape=next(s for s in SHAPES if s not in (c["shape"], d["shape"]))), d])
    truth = [(read_scene(_render(it)), it) for it in single]
    errors = shape_errors(
        truth,
        [
            (read_scene(_render(two[0])), two[0]),
            (read_scene(_render(swapped)), two[1]),
            (read_scene(_render(blob)), two[2]),
            ({"background": "white", "objects": []}, two[0]),
        ],
    )
    assert errors["single_shape_by_size"] and set(errors["single_shape_by_size"].values()) == {1.0}
    assert errors["single_confusions"] == {}
    # 8 named objects: 2 + 1 right, 2 with the other's shape, 1 with a third shape, 2 not found (an empty scene)
    assert errors["two_per_object"] == {
        "own shape": 3 / 8,
        "other object's shape": 2 / 8,
        "a third shape": 1 / 8,
        "not found": 2 / 8,
    }
    # _render draws every two-object scene small: 6 objects found, all read small; 3 of them have their own shape
    assert errors["two_size_drawn"] == {"small": 1.0, "large": 0.0}
    assert errors["two_shape_by_size_drawn"] == {"small": 3 / 6}
    assert "size drawn (the prompts leave it free): small 100.0%" in format_shape_errors(errors)
    right = defaultdict(list)  # by the shape asked for: which named objects came out in their own shape
    for item, oks in ((two[0], (1, 1)), (two[1], (0, 0)), (two[2], (0, 1)), (two[0], (0, 0))):
        for obj, ok in zip(item["objects"], oks):
            right[obj["shape"]].append(ok)
    assert errors["two_shape_by_shape"] == {s: sum(v) / len(v) for s, v in right.items()}
    assert list(errors["two_shape_by_shape"]) == [s for s in SHAPES if s in right]  # in the spec's order
    assert "own shape by the shape asked: " in format_shape_errors(errors)

    wrong = dict(
        single[0],
        objects=[
            dict(single[0]["objects"][0], shape="star" if single[0]["objects"][0]["shape"] != "star" else "circle")
        ],
    )
    errors = shape_errors([(read_scene(_render(wrong)), single[0])], [])
    want, got = single[0]["objects"][0]["shape"], wrong["objects"][0]["shape"]
    assert errors["single_confusions"] == {f"{want} -> {got}": 1} and errors["two_per_object"] == {}
    assert "most common confusions" in format_shape_errors(errors)


class _PerfectPipe:
    """A stand-in pipeline that draws exactly the scene each prompt asks for. A free prompt ("a small green star")
    puts its object in the cell numbered by the seed (mod 9), on white."""

    def __init__(self, items):
        self.items = {it["prompt"]: it for it in items}
        self.calls = []  # the sampling arguments of each call

    def set_progress_bar_config(self, **kwargs):
        pass

    def __call__(self, prompts, generator, **kwargs):
        self.calls.append(kwargs)
        return SimpleNamespace(images=[_render(self._item(p, g.initial_seed())) for p, g in zip(prompts, generator)])

    def _item(self, prompt, seed):
        if prompt in self.items:
            return self.items[prompt]
        *size, color, shape = prompt.split()[1:]
        obj = {"color": color, "shape": shape, "size": size[0] if size else "small"}
        return {"background": "white", "objects": [obj | {"position": list(POSITIONS)[seed % 9]}]}


def test_a_perfect_generator_scores_full_marks_through_evaluate():
    prompts = PromptSets(n_single=2, n_two=2, n_reworded=2, free=("a small green star",))
    pipe = _PerfectPipe([it for items in prompts.draw().values() for it in items])
    results = evaluate(pipe, prompts, batch_size=3)
    assert [name for name in results if name in ("single", "paraphrased", "two")] == ["single", "paraphrased", "two"]
    assert all(results[name]["all"] == 1.0 and results[name]["n"] == 2 for name in ("single", "paraphrased", "two"))
    assert results["free"] == {"distinct_cells_over_16_seeds": {"a small green star": 9}, "min": 9}  # 16 seeds
    assert results["paraphrase_gap"] == {"all": 0.0}
    assert results["extra_objects"]["two"] == {"more objects than named": 0.0, "a named object drawn twice": 0.0}
    assert set(results["shape_errors"]["single_shape_by_size"].values()) == {1.0}
    assert pipe.calls and all(c == {} for c in pipe.calls)  # no sampling given: the pipeline's own defaults


def test_a_sweep_row_reads_each_figure_from_its_own_set():
    """Single objects drawn right, two-object scenes with their pair swapped, reworded prompts in another colour:
    each column of the row says so (a column read from another set would not)."""
    from mmgen.eval.sweep import sweep_row

    prompts = PromptSets(n_single=3, n_two=4, n_reworded=2, free=())
    sets = prompts.draw()
    swapped = [
        dict(it, objects=[dict(a, position=b["position"]), dict(b, position=a["position"])])
        for it in sets["two"]
        for a, b in [it["objects"]]
    ]
    # the reworded prompts drawn in another colour: their row is wrong where the single prompts' is right
    recoloured = [
        dict(it, objects=[dict(o, color="green" if o["color"] != "green" else "red") for o in it["objects"]])
        for it in sets["paraphrased"]
    ]
    pipe = _PerfectPipe(sets["single"] + recoloured + swapped)
    row = sweep_row("ddim", Sampling.defaults(), evaluate(pipe, prompts), prompts)
    assert row["single_all"] == row["single_all_strict"] == 1.0
    assert row["single_color"] == row["single_shape"] == row["single_position"] == 1.0
    assert row["two_all"] == row["two_all_strict"] == 0.0 and row["two_drawn_twice"] == 0.0
    assert row["reworded_all"] == row["reworded_all_strict"] == 0.0
    assert (row["n_single"], row["n_two"], row["n_reworded"]) == (3, 4, 2)


def test_evaluate_passes_its_sampling_settings_to_every_call():
    prompts = PromptSets(n_single=1, n_two=0, n_reworded=0, free=())
    pipe = _PerfectPipe(prompts.draw()["single"])
    sampling = Sampling.defaults(guidance_scale=2.0)
    assert set(evaluate(pipe, prompts, sampling)) == {"single", "strict_judge", "shape_errors", "extra_objects"}
    assert pipe.calls == [sampling.call_kwargs()]
    assert pipe.calls[0]["guidance_scale"] == 2.0 and pipe.calls[0]["num_inference_steps"] == DEFAULT_STEPS


def test_heldout_evaluation_writes_what_the_model_card_reads(tiny_pipe, tmp_path, capsys):
    tiny_pipe.save_pretrained(tmp_path / "pipe")
    out = tmp_path / "eval.json"
    argv = ["eval-generator", "--model", str(tmp_path / "pipe"), "--steps", "1", "--out", str(out)]
    assert main(argv + ["--n-single", "1", "--n-two", "1", "--n-reworded", "1"]) == 0
    results = json.loads(out.read_text())
    assert list(results) == [
        "single",
        "paraphrased",
        "two",
        "shape_errors",
        "extra_objects",
        "free",
        "paraphrase_gap",
        "strict_judge",
        "settings",
        "tokenizer_ceiling",
    ]
    assert results["single"]["n"] == results["two"]["n"] == 1
    assert list(results["free"]["distinct_cells_over_16_seeds"]) == list(FREE_PROMPTS)
    assert results["settings"] == {
        "model": str(tmp_path / "pipe"),
        "scheduler": type(tiny_pipe.scheduler).__name__,
        "steps": 1,
        "guidance_scale": DEFAULT_GUIDANCE_SCALE,
        "guidance_interval": None if DEFAULT_GUIDANCE_INTERVAL is None else list(DEFAULT_GUIDANCE_INTERVAL),
        "codebook_snap": DEFAULT_CODEBOOK_SNAP,
        "num_candidates": DEFAULT_NUM_CANDIDATES,
        "autocast": "float32",
        "first_block_cache": 0.0,
    }
    assert results["tokenizer_ceiling"] == {}  # 32x32 images: not shapes-v1's canvas
    printed = capsys.readouterr().out
    assert ">= 0.6" in printed and "images with extra objects" in printed


def test_sweep_runs_every_setting_asked_and_writes_json(tiny_pipe, tmp_path, capsys):
    tiny_pipe.save_pretrained(tmp_path / "pipe")
    out = tmp_path / "sweep.json"
    assert (
        main(
            [
                "eval-generator",
                "--model",
                str(tmp_path / "pipe"),
                "--sweep",
                "--steps",
                "2",
                "--sweep-schedulers",
                "ddim",
                "euler-ancestral",
                "--sweep-guidance",
                "2",
                "--sweep-codebook-snap",
                "0",
                "0.5",
                "--sweep-n-single",
                "2",
                "--sweep-n-two",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = json.loads(out.read_text())["rows"]
    settings = [(r["scheduler"], r["guidance"], r["codebook_snap"]) for r in rows]
    assert settings == [
        ("ddim", 2.0, 0.0),
        ("ddim", 2.0, 0.5),
        ("euler-ancestral", 2.0, 0.0),
        ("euler-ancestral", 2.0, 0.5),
    ]
    assert all(r["n_single"] == 2 and r["n_two"] == 2 and 0 <= r["two_all"] <= 1 for r in rows)
    assert all(r["two_drawn_twice"] in (0.0, 0.5, 1.0) for r in rows)  # of 2 two-object prompts
    assert all(r["single_color"] in (0.0, 0.5, 1.0) for r in rows)  # of 2 single-object prompts
    # the same images read by the strict judge, which only ever refuses a shape the lenient reading names
    assert all(r["single_all_strict"] <= r["single_all"] and r["two_all_strict"] <= r["two_all"] for r in rows)
    # a sweep that names no interval runs at the pipeline's default one, and its rows say so
    default = None if DEFAULT_GUIDANCE_INTERVAL is None else list(DEFAULT_GUIDANCE_INTERVAL)
    assert all(r.get("guidance_interval") == default for r in rows)
    printed = capsys.readouterr().out
    assert "snap" in printed and "2-strict" in printed


def test_bf16_applies_to_the_sweep_too(tiny_pipe, tmp_path, monkeypatch):
    """eval-generator --bf16 --sweep swept in float32, unsaid."""
    import torch

    from mmgen.eval import eval_generator

    tiny_pipe.save_pretrained(tmp_path / "pipe")
    seen = []
    monkeypatch.setattr(eval_generator, "sweep", lambda pipe, *a: seen.append(pipe.autocast_dtype) or [])
    out = tmp_path / "sweep.json"
    assert main(["eval-generator", "--model", str(tmp_path / "pipe"), "--sweep", "--bf16", "--out", str(out)]) == 0
    assert seen == [torch.bfloat16] and json.loads(out.read_text())["autocast"] == "bf16"  # and its file says so


def test_sweep_free_counts_cells_on_its_own_prompts(tiny_pipe, tmp_path):
    assert not set(FREE_PROMPTS) & set(TUNE_FREE_PROMPTS)  # tuning never sees the reported evaluation's prompts
    tiny_pipe.save_pretrained(tmp_path / "pipe")
    out = tmp_path / "sweep.json"
    assert (
        main(
            [
                "eval-generator",
                "--model",
                str(tmp_path / "pipe"),
                "--sweep",
                "--sweep-free",
                "--steps",
                "4",  # DDIM's fewest from the tiny model's schedule ("leading" spacing starts 3 steps at t = 666)
                "--sweep-schedulers",
                "ddim",
                "--sweep-guidance",
                "2",
                "--sweep-n-single",
                "1",
                "--sweep-n-two",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    (row,) = json.loads(out.read_text())["rows"]
    assert list(row["free_cells"]) == list(TUNE_FREE_PROMPTS)
    assert row["free_min"] == min(row["free_cells"].values()) and all(0 <= n <= 9 for n in row["free_cells"].values())


def test_sweep_without_steps_runs_at_the_models_own_default(tiny_pipe, tmp_path):
    from mmgen.pipeline import MMGenPipeline

    # a model folder that sets its own steps (model_index.json's sampling_defaults): the sweep samples at them
    MMGenPipeline(**tiny_pipe.components, sampling_defaults={"num_inference_steps": 4}).save_pretrained(
        tmp_path / "pipe"
    )
    out = tmp_path / "sweep.json"
    assert (
        main(
            [
                "eval-generator",
                "--model",
                str(tmp_path / "pipe"),
                "--sweep",
                "--sweep-schedulers",
                "ddim",
                "--sweep-guidance",
                "2",
                "--sweep-n-single",
                "1",
                "--sweep-n-two",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert [r["steps"] for r in json.loads(out.read_text())["rows"]] == [4]


def test_sweep_guidance_interval_is_a_setting_and_bad_intervals_are_refused(tiny_pipe, tmp_path, capsys):
    tiny_pipe.save_pretrained(tmp_path / "pipe")
    out = tmp_path / "sweep.json"
    assert (
        main(
            [
                "eval-generator",
                "--model",
                str(tmp_path / "pipe"),
                "--sweep",
                "--steps",
                "2",
                "--sweep-schedulers",
                "ddim",
                "--sweep-guidance",
                "2",
                "--sweep-guidance-interval",
                "0,800",
                "0,999",
                "all",
                "--sweep-n-single",
                "1",
                "--sweep-n-two",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = json.loads(out.read_text())["rows"]
    assert [r.get("guidance_interval") for r in rows] == [[0.0, 800.0], [0.0, 999.0], None]  # all: every step
    assert "guided in 0..800" in capsys.readouterr().out
    for bad in ("800", "900,100", "a,b"):
        with pytest.raises(SystemExit):
            main(["eval-generator", "--model", str(tmp_path / "pipe"), "--sweep", "--sweep-guidance-interval", bad])
        assert "LOW" in capsys.readouterr().err


def test_sweep_candidates_is_a_setting(tiny_pipe, tmp_path, capsys):
    tiny_pipe.save_pretrained(tmp_path / "pipe")
    out = tmp_path / "sweep.json"
    assert (
        main(
            [
                "eval-generator",
                "--model",
                str(tmp_path / "pipe"),
                "--sweep",
                "--steps",
                "2",
                "--sweep-schedulers",
                "ddim",
                "--sweep-guidance",
                "2",
                "--sweep-candidates",
                "1",
                "3",
                "--sweep-n-single",
                "1",
                "--sweep-n-two",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert [r["num_candidates"] for r in json.loads(out.read_text())["rows"]] == [1, 3]
    assert "best of 3" in capsys.readouterr().out


def test_two_object_size_shares_follow_the_spec():
    """Sizes are drawn uniformly, but a large shape never sits next to another object: more small ones."""
    shares = two_object_size_shares(n_scenes=1000)
    assert set(shares) == set(SIZES) and abs(sum(shares.values()) - 1) < 1e-9
    assert 0.52 < shares["small"] < 0.7


def test_sweep_reads_its_own_reworded_prompts_when_asked(tiny_pipe, tmp_path, capsys):
    tiny_pipe.save_pretrained(tmp_path / "pipe")
    out = tmp_path / "sweep.json"
    args = ["eval-generator", "--model", str(tmp_path / "pipe"), "--sweep", "--steps", "4", "--out", str(out)]
    args += ["--sweep-schedulers", "ddim", "--sweep-guidance", "2", "--sweep-n-single", "1", "--sweep-n-two", "1"]
    assert main([*args, "--sweep-n-reworded", "2"]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["n_reworded"] == 2 and 0 <= row["reworded_all_strict"] <= row["reworded_all"] <= 1
    assert "reworded" in capsys.readouterr().out
    assert main(args) == 0  # none asked for: the row has none
    (row,) = json.loads(out.read_text())["rows"]
    assert "reworded_all" not in row


def test_given_its_vocabulary_evaluate_also_reads_the_reworded_prompts_in_known_words():
    from mmgen.models.text_encoder import load_text_encoder
    from mmgen.vocabulary import Vocabulary

    prompts = PromptSets(n_single=2, n_two=0, n_reworded=3, free=())
    sets = prompts.draw()
    vocabulary = Vocabulary.from_captions(it["prompt"] for it in sets["single"])
    encoder = load_text_encoder()
    known = [vocabulary.in_known_words(it["prompt"], encoder) for it in sets["paraphrased"]]
    assert all(k != it["prompt"].lower() for k, it in zip(known, sets["paraphrased"]))

    # a pipe that draws the rewritten prompts right and the reworded ones in the wrong cell
    def elsewhere(it):  # the item's scene with its object moved to another cell
        obj = it["objects"][0]
        return {**it, "objects": [{**obj, "position": "top" if obj["position"] == "center" else "center"}]}

    wrong = [elsewhere(it) for it in sets["paraphrased"]]
    pipe = _PerfectPipe([{**it, "prompt": p} for it, p in zip(sets["paraphrased"], known)] + sets["single"] + wrong)
    pipe.tokenizer, pipe.text_encoder = encoder
    results = evaluate(pipe, prompts, vocabulary=vocabulary)
    assert results["paraphrased"]["all"] == 0.0
    assert results["paraphrased_known_words"]["n"] == 3 and results["paraphrased_known_words"]["all"] == 1.0
    assert "paraphrased_known_words" in results["strict_judge"]
    assert "paraphrased_known_words" not in evaluate(_PerfectPipe(sets["single"]), PromptSets(2, 0, 0, free=()))


def test_a_sweep_without_out_never_writes_over_the_held_out_results(tiny_pipe, tmp_path, monkeypatch):
    tiny_pipe.save_pretrained(tmp_path / "pipe")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "generator.json").write_text('{"single": "the held-out results"}')
    sweep = ["--sweep", "--steps", "4", "--sweep-schedulers", "ddim", "--sweep-guidance", "2"]
    args = ["eval-generator", "--model", str(tmp_path / "pipe"), *sweep, "--sweep-n-single", "1", "--sweep-n-two", "1"]
    assert main(args) == 0
    assert "rows" in json.loads((tmp_path / "eval" / "generator_sweep.json").read_text())
    assert json.loads((tmp_path / "eval" / "generator.json").read_text()) == {"single": "the held-out results"}


def test_a_sweep_refuses_a_bad_setting_before_its_first_row(tiny_pipe, tmp_path, capsys, monkeypatch):
    """`--sweep-candidates 1 -1` ran the first row's minutes, then failed on the second, and wrote nothing."""
    import mmgen.eval.sweep

    tiny_pipe.save_pretrained(tmp_path / "pipe")
    monkeypatch.setattr(mmgen.eval.sweep, "evaluate", lambda *a, **k: pytest.fail("a row ran"))
    grid = ["--sweep", "--steps", "4", "--sweep-schedulers", "ddim", "--sweep-guidance", "2"]
    argv = ["eval-generator", "--model", str(tmp_path / "pipe"), *grid, "--out", str(tmp_path / "sweep.json")]
    assert main([*argv, "--sweep-candidates", "1", "-1"]) == 2
    assert "Candidates must be a whole number" in capsys.readouterr().err
    assert main([*argv[:-2], "--steps", "1", "--sweep-schedulers", "euler", *argv[-2:]]) == 2  # 1 step: t = 0


def test_shapes_evaluations_say_so_on_a_model_of_other_images(tmp_path, tiny_pipe, capsys):
    """eval-generator, eval-caption and eval-attention read a model on shapes-v1 prompts and scenes; on a model of
    other images they printed a table against shapes targets as if it were the model's result."""
    from mmgen.eval.prompts import warn_unless_shapes
    from mmgen.pipeline import MMGenPipeline
    from mmgen.vocabulary import SHAPES_V1, Vocabulary

    tiny_pipe.save_pretrained(tmp_path / "m")
    for grammar, warned in ((None, True), (SHAPES_V1, False)):
        vocabulary = Vocabulary.from_captions(["a cat face"], grammar, ["data/emoji"])
        vocabulary.save(tmp_path / "m" / "transformer" / "vocabulary.json")
        warn_unless_shapes(MMGenPipeline.from_pretrained(tmp_path / "m", text_encoder=tiny_pipe.text_encoder), "x")
        said = capsys.readouterr().err
        assert ("trained on data/emoji, not shapes-v1 alone" in said) == warned
    # published without a vocabulary (its folder was not there): its training log says what it learnt
    (tmp_path / "m" / "transformer" / "vocabulary.json").unlink()
    args = {"seed": 0, "num_samples": 4, "data": "my_images"}
    lines = [{"command": "mmgen train-generator", "args": args}, {"done": True}]
    (tmp_path / "m" / "generator_train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    warn_unless_shapes(MMGenPipeline.from_pretrained(tmp_path / "m", text_encoder=tiny_pipe.text_encoder), "x")
    assert "trained on my_images, not shapes-v1 alone" in capsys.readouterr().err
