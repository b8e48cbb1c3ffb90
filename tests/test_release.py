"""Publishing (mmgen/release.py), the model card (mmgen/model_card.py) and the app's examples (mmgen/examples.py)."""

import copy
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open

from mmgen.models.vqvae import VQVAE
from mmgen.release import release_generator, release_vqvae

ROOT = Path(__file__).resolve().parents[1]


def write_log(path: Path, records: list[dict]) -> None:
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n", 2)[1])


def table_row(card: str, *parts: str) -> bool:
    """Whether one row of a markdown table in the card holds every part."""
    return any(all(p in line for p in parts) for line in card.splitlines() if line.startswith("|"))


def check_card(card: str, tok: dict, gen: dict | None) -> None:
    """The card's shape (Hub metadata, sections, size) and its evaluation figures against the JSON they come from."""
    from mmgen.model_card import MAX_CARD_BYTES

    assert len(card.encode()) <= MAX_CARD_BYTES
    meta = front_matter(card)
    assert meta["license"] == "apache-2.0" and meta["library_name"] == "diffusers"
    assert meta["tags"] and "shapes-v1" in meta["datasets"]
    assert meta.get("pipeline_tag") == ("text-to-image" if gen else None)  # a tokenizer alone is not text-to-image
    for section in ("## Intended use and limits", "## Training", "## Evaluation", "## How to load"):
        assert section in card
    sh, cb = tok["shapes"], tok["codebook"]
    assert table_row(card, "shapes-v1", "PSNR", f"{sh['psnr']:.2f} dB")
    assert table_row(card, "SSIM", f"{sh['ssim']:.3f}")
    assert table_row(card, "perplexity", f"{cb['perplexity']:.0f} of {cb['num_codes']}")
    if sh.get("size", 64) == 64:  # the f4's targets (an f8's at 128 px: the photos' and readability)
        assert table_row(card, "shapes-v1", "PSNR", ">= 34 dB", "yes" if sh["psnr"] >= 34 else "no")
        met = "yes |" if cb["perplexity"] >= cb["num_codes"] / 2 else "**no** |"
        assert table_row(card, "perplexity", f"{cb['perplexity']:.0f} of {cb['num_codes']}", met)
    if gen is None:
        assert "generator" not in card.split("## Evaluation")[1]
        return
    for metric, name, target in (("color", "colour", ">= 97%"), ("background", "background", ">= 98%")):
        assert table_row(card, f"| {name} |", f"{gen['single'][metric]:.1%}", target)
    assert table_row(card, f"single object, every attribute named ({gen['single']['n']} prompts)", "| colour |")
    assert table_row(card, f"| {gen['two']['all']:.1%} |", ">= 60%")
    assert table_row(card, "fewest distinct grid cells the object lands in", f"| {gen['free']['min']} |", ">= 5")


def test_release_vqvae_ships_fp16_weights_log_and_a_tokenizer_card(tmp_path, tiny_model_dir):
    from mmgen.eval.eval_tokenizer import evaluate
    from mmgen.release import main

    run = tmp_path / "run"
    VQVAE.from_pretrained(tiny_model_dir, subfolder="vqvae").save_pretrained(run / "vqvae")
    header = {
        "command": "mmgen train-tokenizer --steps 2",
        "config": {"num_codes": 64, "code_dim": 4, "block_channels": [8, 16, 16]},
        "args": {"data": "shapes", "seed": 0, "photo_fraction": 0.5, "batch_size": 4, "resolution": 32, "lr": 0.001},
    }
    write_log(
        run / "train_log.jsonl", [header, {"step": 2, "loss": 0.1}, {"done": True, "steps": 2, "train_time_s": 60}]
    )

    out = tmp_path / "assets"
    release_vqvae(run / "vqvae", out)
    with safe_open(out / "vqvae" / "diffusion_pytorch_model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys() if k != "quantizer.initialized"} == {torch.float16}
    assert (out / "vqvae_train_log.jsonl").exists()

    results = evaluate(VQVAE.from_pretrained(out / "vqvae", dtype=torch.float32).eval(), n_shapes=4)
    (out / "eval_tokenizer.json").write_text(json.dumps(results))
    assert main(["--out", str(out), "--card", "--recipe", "recipes/tiny.toml"]) == 0
    weights = out / "vqvae" / "diffusion_pytorch_model.safetensors"
    assert weights.stat().st_mode & 0o044 == (out / "vqvae" / "config.json").stat().st_mode & 0o044 == 0o044, (
        "safetensors writes owner-only files: a published folder is readable as its other files are"
    )
    card = (out / "README.md").read_text()
    check_card(card, results, gen=None)
    assert "2 steps of batch 4 at 32x32" in card and "1.0 min" in card and "50% photos" in card
    assert "`mmgen train-tokenizer --recipe recipes/tiny.toml`" in card
    assert "`transformer/`" not in card  # no generator published yet
    assert "VQ-VAE tokenizer" in card and "vq-vae" in front_matter(card)["tags"] and "discriminator" not in card
    # the run's folder, as train-generator --vqvae takes it, names the same tokenizer (it said "no config.json")
    assert release_vqvae(run, tmp_path / "again") == tmp_path / "again" / "vqvae"
    assert (tmp_path / "again" / "vqvae_train_log.jsonl").exists()
    # and a published model's folder, with the history it keeps beside its vqvae/ (the card lost its tokenizer part)
    release_vqvae(out, tmp_path / "from-model")
    log = (tmp_path / "from-model" / "vqvae_train_log.jsonl").read_text()
    assert log == (out / "vqvae_train_log.jsonl").read_text()
    release_vqvae(out, out)  # in place: its own log stays as it is
    assert (out / "vqvae_train_log.jsonl").read_text() == log


def test_an_adversarially_trained_tokenizer_has_a_vq_gan_card(tmp_path, tiny_model_dir):
    from mmgen.model_card import model_card

    out = tmp_path / "vqgan-f8"
    VQVAE.from_pretrained(tiny_model_dir, subfolder="vqvae").save_pretrained(out / "vqvae")
    gan = {"adversarial": True, "disc_start": 100, "disc_weight": 0.5, "feature_weight": 1.0, "shapes_scale": 2}
    args = {"data": "shapes", "seed": 0, "photo_fraction": 0.45, "batch_size": 16, "resolution": 64, "lr": 0.001}
    header = {"command": "mmgen train-tokenizer --adversarial", "args": args | gan}
    write_log(out / "vqvae_train_log.jsonl", [header, {"done": True, "steps": 300, "train_time_s": 600}])
    card = model_card(out)
    assert "VQ-GAN tokenizer" in card and "vq-gan" in front_matter(card)["tags"]
    assert "scenes drawn at 128 px" in card and "From step 100 on, a PatchGAN discriminator" in card
    assert "An adversarial decoder paints" in card


def test_release_generator_ships_fp16_without_the_text_encoder_and_its_card(tmp_path, tiny_pipe):
    from mmgen.model_card import model_card
    from mmgen.pipeline import MMGenPipeline

    run, out = tmp_path / "run", tmp_path / "assets"
    tiny_pipe.transformer.save_pretrained(run / "transformer")
    # the run trained v-prediction: the release must sample with the run's noise schedule, not a default one
    type(tiny_pipe.scheduler).from_config(
        tiny_pipe.scheduler.config, prediction_type="v_prediction", timestep_spacing="leading"
    ).save_pretrained(run / "scheduler")
    tiny_pipe.vqvae.to(torch.float16).save_pretrained(out / "vqvae")
    args = {"seed": 0, "num_samples": 10, "caption_dropout": 0.1, "batch_size": 4, "lr": 3e-4, "steps": 500}
    args |= {"ema_decay": 0.99, "mixed_precision": "no", "loss_weighting": "min-snr-1", "object_loss_weight": 4.0}
    stage1 = {"command": "mmgen train-generator --steps 500", "args": args, "encoding_s": 90.0}
    stage2 = {
        "command": "mmgen train-generator --init-from assets/mmgen-base --steps 200",
        "args": args | {"init_from": "assets/mmgen-base", "data_seed": 1, "lr": 1e-4, "steps": 200},
        "encoding_s": 30.0,
    }
    done1, done2 = (
        {"done": True, "steps": 500, "train_time_s": 120.0},
        {"done": True, "steps": 200, "train_time_s": 60.0},
    )
    write_log(run / "train_log.jsonl", [stage1, {"step": 500, "loss": 0.2}, done1, stage2, done2])

    release_generator(run, out, scheduler="unipc")
    # readable as the folder's other files: a recipe publishes through here, not through the command line
    assert all(f.stat().st_mode & 0o044 == 0o044 for f in (out / "transformer").glob("*.safetensors"))
    index = json.loads((out / "model_index.json").read_text())
    assert index["text_encoder"] == [None, None] and index["tokenizer"] == [None, None]
    with safe_open(out / "transformer" / "diffusion_pytorch_model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    assert (out / "generator_train_log.jsonl").exists()

    pipe = MMGenPipeline.from_pretrained(out, text_encoder=tiny_pipe.text_encoder)  # tiny BERT: not MiniLM's width
    assert type(pipe.scheduler).__name__ == "UniPCMultistepScheduler"
    config = pipe.scheduler.config
    assert config.prediction_type == "v_prediction" and config.timestep_spacing == "leading"
    assert pipe.transformer.dtype == torch.float32 and pipe.tokenizer is not None  # the bundled MiniLM tokenizer
    pipe.set_progress_bar_config(disable=True)
    assert pipe("a red circle", num_inference_steps=3).tokens.shape == (1, 8, 8)

    tok = {
        "shapes": {"n_images": 4, "seed": 2, "psnr": 33.5, "ssim": 0.9, "readable_shape": 0.75}
        | {f"readable_{a}": 1.0 for a in ("color", "size", "position")},
        "codebook": {"num_codes": 64, "usage": 1.0, "perplexity": 40.0},
    }
    gen = {
        "single": {
            "color": 0.99,
            "background": 0.95,
            "shape": 0.9,
            "size": 1.0,
            "position": 0.875,
            "all": 0.8,
            "n": 8,
        },
        "paraphrased": {"position": 0.5, "all": 0.25, "n": 4},
        "two": {"relation": 1.0, "count": 0.75, "shapes": 0.5, "all": 0.625, "n": 8},
        "free": {"min": 4},
        "strict_judge": {"single": {"all": 0.5, "n": 8}, "two": {"all": 0.125, "n": 8}},
        "tokenizer_ceiling": {"two": {"tokenized": {"all": 0.875}, "tokenized_strict": {"all": 0.75}}},
        "settings": {"scheduler": "UniPCMultistepScheduler", "steps": 30, "guidance_scale": 4.0, "num_candidates": 4},
    }
    (out / "eval_tokenizer.json").write_text(json.dumps(tok))
    (out / "eval_generator.json").write_text(json.dumps(gen))
    card = model_card(out)
    check_card(card, tok, gen)
    assert table_row(card, "shapes-v1", "33.50 dB", "**no**")  # a missed target says so
    assert table_row(card, "| background |", "95.0%", ">= 98%", "**no**")
    assert table_row(card, "| position |", "87.5%", ">= 90%", "**no**") and table_row(card, "| 62.5% |", "yes")
    assert table_row(card, "fewest distinct grid cells the object lands in", "| 4 |", "**no**")
    assert "`UniPCMultistepScheduler`" in card and "30 steps, guidance 4, codebook snap 0, best of 4" in card
    # the training section: one row per stage, the shared settings once, the time in all
    assert table_row(card, "| 1 | 500 | 4 | 0.0003 | 10 shapes-v1 scenes, stream 0 | 4x | 2.0 min |")
    assert table_row(card, "| 2 | 200 | 4 | 0.0001 | 10 shapes-v1 scenes, stream 1 | 4x | 1.0 min |")
    assert "in 2 stages" in card and "loss weighting min(SNR + 1, 5)" in card
    assert "Training time in all: 3.0 min on a 2-core CPU (no GPU), plus 2.0 min encoding the data." in card
    assert table_row(card, "read by the strict judge", "single object: all right", "50.0%")
    assert table_row(card, "two objects: all right", "12.5%")
    assert table_row(card, "tokenizer ceiling: real two-object scenes, tokenized", "all at once", "87.5%")
    assert table_row(card, "the same, read by the strict judge", "75.0%")
    assert "Each stage's exact command" in card  # no recipe named: the logs hold the commands
    assert f'from_pretrained("{out.as_posix()}")' in card

    # a DiT continued on another tokenizer's latents (the 128-px model): each stage names its tokenizer
    moved = stage2 | {"args": stage2["args"] | {"vqvae": "assets/vqgan-f8"}}
    write_log(
        out / "generator_train_log.jsonl",
        [stage1 | {"args": args | {"vqvae": "assets/mmgen-base-64"}}, done1, moved, done2],
    )
    card = model_card(out)
    assert table_row(card, "| 2 | 200 |", "stream 1, tokenizer of `vqgan-f8`")
    assert table_row(card, "| 1 | 500 |", "stream 0, tokenizer of `mmgen-base-64`")

    # a generator trained on a user's folder: the metadata and the limits say so, not shapes-v1's
    stages = [stage1, done1, stage2, done2]
    write_log(
        out / "generator_train_log.jsonl",
        [r | {"args": r["args"] | {"data": "data/my_images"}} if "args" in r else r for r in stages],
    )
    card = model_card(out)
    assert "my_images" in front_matter(card)["datasets"] and "Trained with mmgen on `data/my_images`" in card
    assert table_row(card, "| 1 | 500 | 4 | 0.0003 | data/my_images | 4x |") and "shapes-v1 scenes, stream" not in card


def test_a_card_over_the_budget_is_refused(tmp_path, tiny_model_dir, monkeypatch):
    import mmgen.model_card

    monkeypatch.setattr(mmgen.model_card, "MAX_CARD_BYTES", 100)
    with pytest.raises(ValueError, match="over the 0 KB budget"):
        mmgen.model_card.write_model_card(tiny_model_dir)
    assert not (Path(tiny_model_dir) / "README.md").exists()


@pytest.mark.parametrize("name", ["mmgen-base", "mmgen-base-64"])
def test_the_shipped_cards_are_current(monkeypatch, name):
    """assets/NAME/README.md is what `python -m mmgen.release --out assets/NAME --card` writes now."""
    from mmgen.model_card import model_card

    folder, recipe = ROOT / "assets" / name, f"recipes/{name}.toml"
    monkeypatch.chdir(ROOT)
    card = (folder / "README.md").read_text()
    assert card == model_card(f"assets/{name}", recipe=recipe), "rerun: python -m mmgen.release --card"
    tok, gen = (json.loads((folder / f"eval_{n}.json").read_text()) for n in ("tokenizer", "generator"))
    check_card(card, tok, gen)
    caption, attention = (json.loads((folder / f"eval_{n}.json").read_text()) for n in ("caption", "attention"))
    two = f"| its own caption (`caption()`): every attribute | {caption['captioning']['two']['all']:.1%} |"
    assert two in card and f"| {attention['peak_on_object']['color']:.1%} / " in card
    assert (ROOT / recipe).exists() and f"`{recipe}` rebuilds these weights" in card
    assert not list(folder.glob("*runs.md"))  # run-by-run notes live in docs/, not beside the weights


def test_large_weights_ship_in_shards_that_load_back(tmp_path, tiny_pipe, monkeypatch):
    import mmgen.release
    from mmgen.pipeline import MMGenPipeline

    monkeypatch.setattr(mmgen.release, "MAX_SHARD", "20KB")  # the tiny DiT is ~100 KB in fp16
    run, out = tmp_path / "run", tmp_path / "assets"
    tiny_pipe.transformer.save_pretrained(run / "transformer")
    tiny_pipe.vqvae.to(torch.float16).save_pretrained(out / "vqvae")
    release_generator(run, out)
    shards = sorted((out / "transformer").glob("*.safetensors"))
    assert len(shards) > 1 and all(f.stat().st_size < 30_000 for f in shards)
    loaded = MMGenPipeline.from_pretrained(out, text_encoder=tiny_pipe.text_encoder)
    theirs, ours = loaded.transformer.state_dict(), tiny_pipe.transformer.state_dict()
    assert all(torch.equal(theirs[k], ours[k].half().float()) for k in ours)
    # a tokenizer too (an f16 is 14 MB in fp16): it was refused as over the 10 MB limit, and could never be used
    monkeypatch.setattr(mmgen.release, "MAX_SHARD", "5KB")  # the tiny VQ is ~30 KB in fp16
    tiny_pipe.vqvae.save_pretrained(run / "vqvae")
    release_vqvae(run / "vqvae", tmp_path / "tokenizer")
    assert len(list((tmp_path / "tokenizer" / "vqvae").glob("*.safetensors"))) > 1
    theirs, ours = VQVAE.from_pretrained(tmp_path / "tokenizer" / "vqvae").state_dict(), tiny_pipe.vqvae.state_dict()
    assert all(torch.equal(theirs[k].float(), ours[k].half().float()) for k in ours)


def test_examples_are_the_shipped_ones(tmp_path):
    from PIL import Image

    from mmgen.examples import write_examples

    paths = write_examples(tmp_path)
    scenes = [f"shapes-{i}{size}.png" for size in ("", "-128") for i in (0, 3, 5)]  # 64 px, then 128
    assert [p.name for p in paths] == [*scenes, "coffee.png", "astronaut.png"]
    for p in paths:
        assert np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(ROOT / "assets" / "examples" / p.name)))


def test_example_scenes_come_with_their_own_caption_and_three_wrong_ones():
    """The Image → text tab's examples: the first caption is what the judge reads in the shipped file (at either
    size), and each other changes one thing of it."""
    from PIL import Image

    from mmgen.captioning import SceneCaption
    from mmgen.data.shapes import shapes_sample
    from mmgen.eval.judge import read_scene, score_scene
    from mmgen.examples import HELD_OUT_STREAM, captions_to_rank, scene_captions

    for name, i in (("shapes-0.png", 0), ("shapes-0-128.png", 0), ("shapes-5.png", 5), ("shapes-5-128.png", 5)):
        own, *wrong = scene_captions(name)
        labels = shapes_sample(HELD_OUT_STREAM, i).labels
        assert score_scene(read_scene(Image.open(ROOT / "assets" / "examples" / name)), labels)["all"], name
        assert own == SceneCaption.from_labels(labels).text
        assert len(wrong) == 3 and own not in wrong
        for caption in wrong:  # one word changed ("to the right of" -> "to the left of": one too)
            assert len(caption.split()) == len(own.split())
            assert sum(a != b for a, b in zip(caption.split(), own.split())) == 1, caption
    assert scene_captions("coffee.png") == [] and scene_captions("shapes-1.png") == []
    centre = {"background": "white", "objects": [dict(color="red", shape="circle", size="small", position="center")]}
    own, *wrong = captions_to_rank(centre)
    assert len(set(wrong)) == 3 and own not in wrong and "center" not in wrong[-1]  # the centre's wrong place


def test_a_recipes_sampling_table_is_written_into_a_published_folder(tmp_path, tiny_pipe):
    from mmgen.pipeline import MMGenPipeline
    from mmgen.release import main as release_main

    model, recipe = tmp_path / "m", tmp_path / "m.toml"
    tiny_pipe.save_pretrained(model)
    recipe.write_text('model = "m"\n[sampling]\nnum_inference_steps = 30\nguidance_scale = 7.0\n')
    assert release_main(["--out", str(model), "--sampling", "--recipe", str(recipe)]) == 0
    own = MMGenPipeline.from_pretrained(model, text_encoder=tiny_pipe.text_encoder).sampling_defaults
    assert own == tiny_pipe.sampling_defaults | {"num_inference_steps": 30, "guidance_scale": 7.0}
    recipe.write_text('model = "m"\n')  # the table gone: the library's defaults again
    assert release_main(["--out", str(model), "--sampling", "--recipe", str(recipe)]) == 0
    assert json.loads((model / "model_index.json").read_text())["sampling_defaults"] is None
    loaded = MMGenPipeline.from_pretrained(model, text_encoder=tiny_pipe.text_encoder)
    assert loaded.sampling_defaults == tiny_pipe.sampling_defaults


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sampling"], r"--sampling reads a recipe's \[sampling\] table: name one"),
        (["--sampling", "--recipe", "{tmp}/none.toml"], "recipe .*none.toml not found"),
        (["--sampling", "--recipe", "{tmp}/bad.toml"], r"\[sampling\]: Steps must be a whole number"),
    ],
)
def test_release_refuses_a_missing_or_bad_sampling_table_with_a_message(tmp_path, tiny_pipe, capsys, args, message):
    from mmgen.release import main as release_main

    tiny_pipe.save_pretrained(tmp_path / "m")
    (tmp_path / "bad.toml").write_text('model = "m"\n[sampling]\nnum_inference_steps = 0\n')
    before = (tmp_path / "m" / "model_index.json").read_text()
    assert release_main(["--out", str(tmp_path / "m"), *(a.format(tmp=tmp_path) for a in args)]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert (tmp_path / "m" / "model_index.json").read_text() == before  # nothing written


@pytest.mark.parametrize("name", ["mmgen-base", "mmgen-base-64", "mmgen-emoji"])
def test_each_shipped_model_samples_at_its_recipes_settings(name):
    """model_index.json's sampling_defaults are the recipe's [sampling] (`python -m mmgen.release --sampling`)."""
    from mmgen.training.recipe import load_recipe

    index = json.loads((ROOT / "assets" / name / "model_index.json").read_text())
    assert index.get("sampling_defaults") == load_recipe(ROOT / "recipes" / f"{name}.toml").sampling


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "nothing to do: give --vqvae"),
        (["--card"], r"--card: name the model folder to publish into \(--out\)"),
        (["--generator", "{tmp}/run", "--out", "{tmp}/empty"], "empty holds no vqvae/: publish the generator's"),
    ],
)
def test_release_without_a_destination_or_a_tokenizer_says_so_and_writes_nothing(tmp_path, capsys, args, message):
    from mmgen.release import main as release_main

    (tmp_path / "empty").mkdir()
    assert release_main([a.format(tmp=tmp_path) for a in args]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert list((tmp_path / "empty").iterdir()) == []


def test_release_checks_what_it_publishes_before_it_writes(tmp_path, tiny_pipe, capsys):
    """A folder that is not a trained tokenizer or generator, or none at all, is one line, and the model folder is
    left as it was (a DiT folder given as --vqvae used to overwrite vqvae/config.json, then fail on its weights);
    a tokenizer of another codebook under a published DiT is published with a warning (a rebuild publishes the new
    generator next)."""
    from mmgen.release import main as release_main

    model = tmp_path / "model"
    tiny_pipe.save_pretrained(model)
    tiny_pipe.transformer.save_pretrained(tmp_path / "run" / "transformer")
    before = {p: p.read_bytes() for p in model.rglob("*") if p.is_file()}
    capsys.readouterr()
    for args, message in (
        (["--vqvae", str(model / "transformer")], r"is not a saved VQVAE .*names DiT"),
        (["--vqvae", str(tmp_path / "missing")], r"missing: no such folder \(--vqvae"),
        (["--generator", str(tmp_path / "missing")], r"missing/transformer: no such folder \(--generator"),
    ):
        code = release_main([*args, "--out", str(model)])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and re.search(message, err) and "Traceback" not in err
        assert {p: p.read_bytes() for p in model.rglob("*") if p.is_file()} == before
    other = copy.deepcopy(tiny_pipe.vqvae)
    other.quantizer.codebook.data = other.quantizer.codebook.data.flip(0)  # the same codes, other ids
    other.save_pretrained(tmp_path / "other")
    assert release_main(["--vqvae", str(tmp_path / "other"), "--out", str(model)]) == 0
    assert "was trained on the codes of the tokenizer this replaces" in capsys.readouterr().err
    assert not (model / ".vqvae-publishing").exists()


def test_an_unfinished_run_is_named_as_one(tmp_path):
    """Publishing a run stopped before its end said "transformer: no such folder"."""
    for part in ("transformer", "vqvae"):
        (tmp_path / part / "checkpoints" / "step-200").mkdir(parents=True)
    (tmp_path / "model" / "vqvae").mkdir(parents=True)
    (tmp_path / "model" / "vqvae" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"is an unfinished run \(last checkpoint: step-200\).*--resume"):
        release_generator(tmp_path / "transformer", tmp_path / "model")
    with pytest.raises(ValueError, match=r"is an unfinished run \(last checkpoint: step-200\)"):
        release_vqvae(tmp_path / "vqvae" / "vqvae", tmp_path / "out")


def test_release_knows_its_schedulers_by_name(capsys):
    from mmgen.release import build_parser, release_generator

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--generator", "run", "--out", "m", "--scheduler", "euler_ancestral"])
    assert "invalid choice: 'euler_ancestral'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown scheduler 'bogus'"):
        release_generator("run", "m", "bogus")


def test_a_generator_is_published_only_beside_the_codebook_it_trained_on(tmp_path, tiny_pipe):
    """The run's log names its codebook's fingerprint: the fp32 tokenizer it trained on, published in fp16, fits;
    another tokenizer's codebook is refused (its images would be nonsense); a log without the fingerprint passes."""
    run, out = tmp_path / "run", tmp_path / "model"
    tiny_pipe.transformer.save_pretrained(run / "transformer")
    vq = copy.deepcopy(tiny_pipe.vqvae).float()
    vq.quantizer.codebook.data += 1e-4 * torch.randn_like(vq.quantizer.codebook)  # fp32 digits fp16 rounds away
    fingerprint = vq.codebook_fingerprint  # the fp32 tokenizer the run trained on, before publishing
    vq.to(torch.float16).save_pretrained(out / "vqvae")
    args = {"seed": 0, "num_samples": 4, "vqvae": "runs/tok"}
    header = {"command": "mmgen train-generator", "args": args, "codebook_fingerprint": fingerprint}
    done = {"done": True, "steps": 1, "train_time_s": 1.0}
    write_log(run / "train_log.jsonl", [header, done])
    release_generator(run, out)
    write_log(run / "train_log.jsonl", [header | {"codebook_fingerprint": "0123456789abcdef"}, done])
    with pytest.raises(ValueError, match=r"trained on the codes of another tokenizer than .*model/vqvae \(--vqvae"):
        release_generator(run, out)
    # a new tokenizer and a generator of other codes at once: refused before the tokenizer is replaced (it was
    # replaced, then the generator refused, and the folder's old DiT drew nonsense through the new codes)
    from mmgen.release import main

    other = copy.deepcopy(tiny_pipe.vqvae).float()
    other.quantizer.codebook.data += 0.5
    other.save_pretrained(tmp_path / "other" / "vqvae")
    before = (out / "vqvae" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert main(["--vqvae", str(tmp_path / "other"), "--generator", str(run), "--out", str(out)]) == 2
    assert (out / "vqvae" / "diffusion_pytorch_model.safetensors").read_bytes() == before
    write_log(run / "train_log.jsonl", [{"command": "mmgen train-generator", "args": args}, done])
    release_generator(run, out)


def test_a_generator_trained_on_a_folder_that_is_not_here_is_published_with_a_warning(tmp_path, tiny_pipe, capsys):
    """Trained on another machine (the README's `accelerate launch`), or its images moved: the folder it trained on
    is not where the log says. It was refused whole; it is published without its vocabulary, saying what that
    costs and how to add it once the folder is back."""
    from mmgen.data.shapes import shapes_annotation
    from mmgen.release import main

    run, out = tmp_path / "run", tmp_path / "model"
    tiny_pipe.transformer.save_pretrained(run / "transformer")
    tiny_pipe.vqvae.to(torch.float16).save_pretrained(out / "vqvae")
    images = tmp_path / "my images"
    args = {"seed": 0, "num_samples": 4, "data": str(images)}
    write_log(run / "train_log.jsonl", [{"command": "mmgen train-generator", "args": args}, {"done": True}])
    release_generator(run, out)
    assert "published without transformer/vocabulary.json" in capsys.readouterr().err
    assert (out / "transformer" / "config.json").is_file() and not (out / "transformer" / "vocabulary.json").exists()
    images.mkdir()
    caption = shapes_annotation(0, 0)[1]
    # the folder back, with a caption: --vocabulary reads it from the copied log
    (images / "a.png").write_bytes((ROOT / "assets" / "examples" / "shapes-0.png").read_bytes())
    (images / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "text": caption}) + "\n")
    assert main(["--out", str(out), "--vocabulary"]) == 0
    assert set(json.loads((out / "transformer" / "vocabulary.json").read_text())["words"]) >= set(caption.split())


def test_a_cards_links_to_the_repository_resolve_where_the_card_is(tmp_path):
    """Every card linked ../../README.md, right only under assets/: a user's folder got dead links."""
    from mmgen.model_card_usage import REPO, ROOT, with_repo_links

    text = f"made with [mmgen]({REPO}/README.md); see [docs/a.md]({REPO}/docs/a.md)."
    assert with_repo_links(text, ROOT / "assets" / "m") == text
    assert with_repo_links(text, ROOT / "runs" / "a" / "b") == text.replace("../..", "../../..")
    assert with_repo_links(text, tmp_path) == "made with mmgen; see docs/a.md (in mmgen's repository)."


def test_the_card_of_a_model_of_ones_own_images_reports_what_was_measured_on_them(tmp_path, tiny_pipe):
    """A model trained on a folder: its card tabled shapes-v1's judge (read on prompts it never learnt) as its
    results, said its folder evaluation was of shapes-v1 scenes and photos without tabling it, and linked the
    shipped models' run notes."""
    from mmgen.model_card import model_card

    out = tmp_path / "mine"
    tiny_pipe.vqvae.to(torch.float16).save_pretrained(out / "vqvae")
    tiny_pipe.transformer.save_pretrained(out / "transformer")
    args = {"seed": 0, "num_samples": 10, "data": "my_images", "batch_size": 4, "lr": 3e-4, "steps": 5}
    write_log(out / "generator_train_log.jsonl", [{"command": "mmgen train-generator", "args": args}, {"done": True}])
    folder = {"path": "my_images_held_out", "n_images": 12, "psnr": 27.5, "ssim": 0.9, "usage": 0.5, "perplexity": 9}
    (out / "eval_tokenizer.json").write_text(json.dumps({"folder": folder, "codebook": {"num_codes": 64}}))
    (out / "eval_generator.json").write_text(json.dumps({"single": {"all": 0.0}}))
    found = {"n": 50, "pixels": {"top1": 0.2, "top5": 0.5}}
    retrieval = {"half": "test", "gallery": 400, "chance": {"top1": 0.0025, "top5": 0.0125}, "reworded": found}
    (out / "eval_retrieval.json").write_text(json.dumps(retrieval))
    card = model_card(out)
    assert (
        "| generator: 50 prompts of `reworded`, retrieved among 400 images | top-1 / top-5 (pixels) | 20.0% / 50.0% |"
    )
    assert " chance 0.2% / 1.2% |" in card and "`eval_retrieval.json`" in card
    assert "on `my_images_held_out`" in card and "shapes-v1 scenes of a held-out stream" not in card
    assert "| tokenizer: 12 images of `my_images_held_out` | PSNR / SSIM | 27.50 dB / 0.900 |" in card
    assert "single object" not in card and "eval_generator.json" not in card and "runs.md" not in card


def test_the_card_holds_the_strict_judge_to_its_targets():
    """The strict judge's rows had no target: a reader saw "yes" on the lenient rows and no missed target."""
    from mmgen.model_card_generator import strict_rows

    strict = {"single": {"all": 0.917}, "paraphrased": {"all": 0.5}, "two": {"all": 0.688}}
    rows = strict_rows(strict)
    assert "| single object: all right | 91.7% | >= 90% | yes |" in rows[0]
    assert rows[2].endswith("| two objects: all right | 68.8% | >= 70% | **no** |")
    assert rows[3].endswith("| reworded: points under the same facts as trained | 41.7 | <= 10 | **no** |")


def test_a_card_says_a_fine_tuned_model_was_fine_tuned(tmp_path):
    """The README's walk-through model, fine-tuned from mmgen-base-64, was carded "trained from scratch"."""
    from mmgen.model_card_origin import origin as _origin

    log = [{"command": "mmgen train-generator", "args": {"init_from": "assets/mmgen-base-64"}}, {"done": True}]
    (tmp_path / "generator_train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    assert _origin(tmp_path) == "fine-tuned from `assets/mmgen-base-64`"
    log[0]["args"] = {"init_from": None}
    (tmp_path / "generator_train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    assert _origin(tmp_path) == "trained from scratch"


def test_a_model_fine_tuned_on_ones_own_images_is_carded_as_such(tmp_path, tiny_pipe):
    """A walk-through model's log carries the stages of the model it started from (the first from nothing): its
    card said "trained from scratch", its tokenizer "trained on shapes-v1 and photos", and its example drew a red
    circle."""
    from mmgen.model_card import model_card
    from mmgen.model_paths import ROOT
    from mmgen.vocabulary import Vocabulary

    out = tmp_path / "mine"
    tiny_pipe.save_pretrained(out)
    base = {"seed": 0, "num_samples": 10, "batch_size": 4, "lr": 3e-4, "steps": 5, "resolution": 64}
    own = {"data": "my_images", "init_from": str(ROOT / "assets" / "mmgen-base-64")}
    for part in ("vqvae", "generator"):
        stages = [{"command": "mmgen x", "args": base}, {"done": True}, {"command": "mmgen y", "args": base | own}]
        write_log(out / f"{part}_train_log.jsonl", [*stages, {"done": True}])
    Vocabulary.from_captions(['a "cat" on a mat', "a dog"]).save(out / "transformer" / "vocabulary.json")
    card = model_card(out)
    assert "made with [mmgen](../../README.md)" not in card  # outside the repository: no relative links
    assert "made with mmgen, fine-tuned from `assets/mmgen-base-64`" in card and str(ROOT) not in card
    assert "Trained with mmgen on `my_images` (fine-tuned from `assets/mmgen-base-64`" in card
    assert 'out = pipe("a \\"cat\\" on a mat", generator' in card and "red circle" not in card
    assert "base_model" not in front_matter(card)  # a local folder is no Hub id
    assert "| data (stream: the seed drawing the scenes) |" in card
    for part in ("vqvae", "generator"):  # from a model on the Hub
        stages = [{"command": "mmgen y", "args": base | own | {"init_from": "someone/their-model"}}, {"done": True}]
        write_log(out / f"{part}_train_log.jsonl", stages)
    card = model_card(out)
    assert front_matter(card)["base_model"] == "someone/their-model"
    assert "| data | object cells weighted |" in card  # shapes-v1's streams explained only where there are some
    (out / "model_index.json").unlink()  # the tokenizer alone
    card = model_card(out)
    assert "**Trained on little.** the images in `my_images`: it reconstructs images like those best" in card
    assert "scikit-image" not in card and "rows below" not in card  # no evaluation: no rows to point to


def test_a_generator_ships_the_tokenizer_it_trained_on_however_its_vqvae_was_named(tmp_path, tiny_model_dir):
    """A recipe's stage may name its tokenizer as a model folder or as that folder's vqvae/ (train-generator takes
    both): the model folder gets a copy of it, and naming the model folder's own vqvae/ leaves it be (a copy onto
    itself would have deleted it first)."""
    from mmgen.release import adopt_tokenizer

    other = tmp_path / "other"
    shutil.copytree(Path(tiny_model_dir) / "vqvae", other / "vqvae")
    (other / "vqvae_train_log.jsonl").write_text("{}\n")
    for named in (other, other / "vqvae"):
        model = tmp_path / f"model-{named.name}"
        assert adopt_tokenizer(named, model) == model / "vqvae"
        assert (model / "vqvae" / "config.json").is_file() and (model / "vqvae_train_log.jsonl").is_file()
    assert adopt_tokenizer(other / "vqvae", other) == other / "vqvae"
    assert (other / "vqvae" / "config.json").is_file()  # still there


def test_a_shipped_base_named_from_elsewhere_is_no_hub_id(tmp_path, monkeypatch):
    """`--init-from assets/mmgen-base-64` from another folder: the card called it a Hub base model."""
    from mmgen.model_card_origin import on_the_hub as _on_the_hub

    monkeypatch.chdir(tmp_path)
    assert not _on_the_hub("assets/mmgen-base-64") and not _on_the_hub("mmgen-base-64")
    assert _on_the_hub("someone/their-model") and not _on_the_hub("/abs/path") and not _on_the_hub("a/b/c")
    (tmp_path / "runs").mkdir()
    assert not _on_the_hub("runs/gen")  # a folder here: a run, not a Hub repo
