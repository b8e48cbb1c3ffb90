import json

import pytest
from PIL import Image
from run_helpers import interrupt

from mmgen.cli import build_parser
from mmgen.models.vqvae import VQVAE
from mmgen.training.train_tokenizer import main


def _args(out, *extra):
    return build_parser().parse_args(
        [
            "train-tokenizer",
            "--out",
            str(out),
            "--preset",
            "tiny",
            "--resolution",
            "32",
            "--batch-size",
            "4",
            "--log-every",
            "2",
            "--val-every",
            "2",
            "--checkpoint-every",
            "3",
            "--warmup-steps",
            "1",
            *extra,
        ]
    )


def test_trains_checkpoints_and_resumes(tmp_path):
    import torch

    out = tmp_path / "run"
    main(_args(out, "--steps", "4"))
    assert VQVAE.from_pretrained(out / "vqvae").config.num_codes == 64
    assert (out / "checkpoints" / "step-3" / "vqvae").is_dir()
    assert (out / "checkpoints" / "step-3" / "training_state.pt").is_file()
    assert (out / "samples" / "step-4.png").is_file()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["command"].startswith(("mmgen", "pytest", "python", "__main__"))
    assert {"loss", "psnr", "usage", "perplexity"} <= set(log[1])

    with pytest.raises(ValueError, match="holds a finished run"):
        main(_args(out, "--steps", "4", "--resume"))  # it has a checkpoint, but a finished run is not resumed
    unbroken = VQVAE.from_pretrained(out / "vqvae").state_dict()
    interrupt(out, "vqvae")  # as if killed after step 4, before saving
    log[1]["elapsed_s"] = 1000.0  # as if step 2 came after a long while
    (out / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log[:-1]))
    with pytest.raises(ValueError, match=r"these differ: --steps 6 \(the run: 4\)"):
        main(_args(out, "--steps", "6", "--resume"))
    main(_args(out, "--steps", "4", "--resume"))  # continues from step-3, not from scratch
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in log if "step" in r]
    assert steps == [2, 4], steps  # step 4, logged before the stop, is logged once: by the resumed run
    assert log[-2]["elapsed_s"] >= 1000 and log[-1]["train_time_s"] >= 1000  # the time counts on from step 2's
    resumed = VQVAE.from_pretrained(out / "vqvae").state_dict()
    assert all(torch.equal(unbroken[k], resumed[k]) for k in unbroken)  # it goes on exactly as the unbroken run
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-3"]  # no partial checkpoint left


def test_a_codebook_larger_than_a_batch_of_tokens_trains(tmp_path):
    """A codebook larger than a batch of small crops: 4 crops of 8x8 tokens are 256 tokens for 512 codes here."""
    main(_args(tmp_path / "run", "--steps", "2", "--num-codes", "512"))
    assert VQVAE.from_pretrained(tmp_path / "run" / "vqvae").config.num_codes == 512


def test_same_seed_same_weights(tmp_path):
    import torch

    main(_args(tmp_path / "a", "--steps", "2"))
    main(_args(tmp_path / "b", "--steps", "2"))
    a = VQVAE.from_pretrained(tmp_path / "a" / "vqvae").state_dict()
    b = VQVAE.from_pretrained(tmp_path / "b" / "vqvae").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_trains_on_a_user_image_folder(tmp_path, capsys):
    data = tmp_path / "imgs"
    data.mkdir()
    for i in range(3):
        Image.new("RGB", (48, 40), (80 * i, 20, 200)).save(data / f"{i}.jpg")
    (data / "broken.png").write_bytes(b"\x89PNG not really")  # bad data is left out and counted, never a crash
    Image.new("CMYK", (40, 40)).save(data / "cmyk.jpg")  # odd modes are converted
    Image.new("RGB", (48, 40), (200, 20, 20)).save(tmp_path / "whole.png")
    whole = (tmp_path / "whole.png").read_bytes()
    (data / "trunc.png").write_bytes(whole[: len(whole) // 2])  # its header reads, its data does not
    main(_args(tmp_path / "run", "--steps", "2", "--data", str(data)))
    assert (tmp_path / "run" / "vqvae" / "config.json").exists()
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["data_skipped"] == {"files Pillow cannot read": 1}
    assert log[-1]["done"] and log[-1]["failed_to_decode"] == 1  # found in training, said at the end
    assert "1 image failed to decode; their neighbours stood in (e.g. trunc.png)" in capsys.readouterr().out
    for bad in ("broken.png", "trunc.png"):
        (data / bad).unlink()
    main(_args(tmp_path / "clean", "--steps", "1", "--data", str(data)))
    assert f"{data}: 4 images used\n" in capsys.readouterr().out  # a clean folder is counted too (it said nothing)


def test_init_from_fine_tunes_a_trained_tokenizer_on_a_folder(tmp_path):
    import pytest
    import torch

    from mmgen.eval.eval_tokenizer import evaluate_folder

    main(_args(tmp_path / "first", "--steps", "2", "--num-codes", "32"))
    first = VQVAE.from_pretrained(tmp_path / "first" / "vqvae")
    data = tmp_path / "imgs"
    data.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (80 * i, 20, 200)).save(data / f"{i}.png")
    main(_args(tmp_path / "tuned", "--steps", "2", "--data", str(data), "--init-from", str(tmp_path / "first")))
    tuned = VQVAE.from_pretrained(tmp_path / "tuned" / "vqvae")
    assert tuned.config.num_codes == 32  # the model's own codebook size, not the preset's
    assert bool(tuned.quantizer.initialized)  # no k-means restart of a trained codebook
    assert not torch.equal(first.state_dict()["decoder.net.9.weight"], tuned.state_dict()["decoder.net.9.weight"])
    whole = (data / "0.png").read_bytes()
    (data / "cut.png").write_bytes(whole[: len(whole) // 2])  # unreadable, and a strip too thin for SSIM:
    Image.new("RGB", (1000, 20)).save(data / "strip.png")  # each is left out and named, the rest evaluated
    results = evaluate_folder(tuned, data)  # `mmgen eval-tokenizer --folder`: your own held-out images
    assert results["folder"]["n_images"] == 3 and results["folder"]["psnr"] > 0
    assert list(results["folder"]["left_out"]) == ["cut.png", "strip.png"]
    assert "SSIM needs 7 a side" in results["folder"]["left_out"]["strip.png"]
    with pytest.raises(ValueError, match="its codebook has 32 codes, not --num-codes 64"):
        main(_args(tmp_path / "bad", "--steps", "1", "--init-from", str(tmp_path / "first"), "--num-codes", "64"))
    with pytest.raises(ValueError, match="--init-from .*nothing: .*nothing: no such model folder"):
        main(_args(tmp_path / "bad2", "--steps", "1", "--init-from", str(tmp_path / "nothing")))


def test_decoder_only_keeps_every_images_tokens(tmp_path):
    """--decoder-only (with the GAN on, which steps through the decoder's last layer) trains the decoder alone:
    the encoder and the codebook are unchanged, so every image's tokens are, while the decoder learned."""
    import pytest
    import torch

    main(_args(tmp_path / "first", "--steps", "2"))
    first = VQVAE.from_pretrained(tmp_path / "first" / "vqvae")
    extra = ("--steps", "4", "--init-from", str(tmp_path / "first"), "--decoder-only", "--adversarial")
    main(_args(tmp_path / "tuned", *extra, "--disc-start", "1", "--lr", "1e-2"))
    tuned = VQVAE.from_pretrained(tmp_path / "tuned" / "vqvae")
    before, after = first.state_dict(), tuned.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("decoder."))
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(first.eval().encode(x).indices, tuned.eval().encode(x).indices)
    with pytest.raises(ValueError, match="name it with --init-from"):
        main(_args(tmp_path / "bad", "--steps", "1", "--decoder-only"))


def test_a_recipe_trains_and_publishes_the_tokenizer_once(tmp_path, capsys):
    model, recipe = tmp_path / "model", tmp_path / "tiny.toml"
    recipe.write_text(
        f'model = "{model}"\n[tokenizer]\nout = "{tmp_path / "run"}"\npreset = "tiny"\nresolution = 32\n'
        "steps = 2\nbatch_size = 4\nwarmup_steps = 1\nphoto_fraction = 0.5\nchannels_last = false\n"
    )
    args = build_parser().parse_args(["train-tokenizer", "--recipe", str(recipe)])
    assert main(args) == model
    published = VQVAE.from_pretrained(model / "vqvae")  # fp16 on disk
    assert published.config.num_codes == 64 and (model / "vqvae_train_log.jsonl").is_file()
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["args"]["photo_fraction"] == 0.5 and not log[0]["args"]["channels_last"] and log[-1]["done"]
    capsys.readouterr()
    main(args)  # finished: skipped
    assert "already finished, skipped" in capsys.readouterr().out
    assert len((tmp_path / "run" / "train_log.jsonl").read_text().splitlines()) == len(log)


def test_a_recipe_trains_a_tokenizer_in_stages(tmp_path, capsys):
    """[[tokenizer.stages]]: shared options, each stage's own winning; the decoder-only second stage starts from
    the first's run and is what the model folder holds at the end, with the first stage's tokens."""
    import torch

    model, recipe, first, second = tmp_path / "model", tmp_path / "staged.toml", tmp_path / "a", tmp_path / "b"
    recipe.write_text(
        f'model = "{model}"\n[tokenizer]\nresolution = 32\nbatch_size = 4\nwarmup_steps = 1\n'
        "channels_last = false\n"
        f'[[tokenizer.stages]]\nout = "{first}"\npreset = "tiny"\nsteps = 2\n'
        f'[[tokenizer.stages]]\nout = "{second}"\ninit_from = "{first}"\ndecoder_only = true\nsteps = 2\n'
        "lr = 0.01\n"
    )
    main(build_parser().parse_args(["train-tokenizer", "--recipe", str(recipe)]))
    out = capsys.readouterr().out
    assert "tokenizer stage 1: training" in out and "tokenizer stage 2: training" in out
    a, b = VQVAE.from_pretrained(first / "vqvae"), VQVAE.from_pretrained(second / "vqvae")
    published = VQVAE.from_pretrained(model / "vqvae")
    assert torch.equal(published.decoder.net[-1].weight.float(), b.decoder.net[-1].weight.half().float())
    assert not torch.equal(a.decoder.net[-1].weight, b.decoder.net[-1].weight)
    assert torch.equal(a.quantizer.codebook, b.quantizer.codebook)
    # the published log holds both stages (an --init-from run starts with its parent's log), and so does the card
    from mmgen.model_card_tokenizer import tokenizer_training

    log = [json.loads(line) for line in (model / "vqvae_train_log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in log if "command" in r] == [1, 2] and log[-1]["done"]
    card = tokenizer_training(model)
    assert "Stage 1: shapes-v1" in card and "Stage 2: the decoder alone" in card and card.count("2 steps") == 2


def test_the_trainers_defaults_are_the_shipped_recipes_tokenizer():
    import argparse
    from pathlib import Path

    from mmgen.training import train_tokenizer
    from mmgen.training.recipe import load_recipe, recipe_stages

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "mmgen-base-64.toml")
    (stage,) = recipe_stages(recipe, "tokenizer", train_tokenizer.add_arguments)
    defaults = vars(train_tokenizer.add_arguments(argparse.ArgumentParser()).parse_args([]))
    assert vars(stage.args) == defaults | {"out": "runs/vqvae-base", "num_codes": 512, "resume": True}


def test_vqgan_trains_the_discriminator_in_turn_and_resumes_it(tmp_path):
    import torch

    from mmgen.models.discriminator import PatchDiscriminator

    out = tmp_path / "gan"
    gan = ("--adversarial", "--disc-start", "2")
    main(_args(out, "--steps", "4", *gan))
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["gan"]["disc_start"] == 2
    assert "d_loss" not in log[1] and {"d_loss", "d_real", "d_fake", "g_adv", "adaptive_weight"} <= set(log[2])
    saved = out / "checkpoints" / "step-3"
    assert (saved / "discriminator_state.pt").is_file()
    before = PatchDiscriminator.from_pretrained(saved / "discriminator").state_dict()
    unbroken = VQVAE.from_pretrained(out / "vqvae").state_dict()
    interrupt(out, "vqvae")
    main(_args(out, "--steps", "4", "--resume", *gan))
    after = PatchDiscriminator.from_pretrained(out / "checkpoints" / "step-3" / "discriminator").state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # resumed from it, the checkpoint untouched
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "step" in r] == [2, 4] and "d_loss" in log[-2]
    resumed = VQVAE.from_pretrained(out / "vqvae").state_dict()
    assert all(torch.equal(unbroken[k], resumed[k]) for k in unbroken)  # the discriminator's build drew no RNG


def test_gan_losses_and_the_adaptive_weight():
    import torch

    from mmgen.training.adversarial import adaptive_weight, hinge_discriminator_loss

    sure = hinge_discriminator_loss(torch.full((2, 1, 3, 3), 2.0), torch.full((2, 1, 3, 3), -2.0))
    fooled = hinge_discriminator_loss(torch.full((2, 1, 3, 3), -1.0), torch.full((2, 1, 3, 3), 1.0))
    assert sure.item() == 0.0 and fooled.item() == 2.0
    w = torch.ones(3, requires_grad=True)
    rec, adv = (w * 4).sum(), (w * 0.5).sum()  # gradients 4 and 0.5 per element: ratio 8
    assert abs(adaptive_weight(rec, adv, w).item() - 8.0) < 1e-2


def test_a_checkpoint_is_whole_or_absent(tmp_path):
    """A checkpoint is written under a hidden name and renamed once whole: a failure while writing leaves nothing,
    and a partial folder a killed run left is removed with the old checkpoints."""
    import pytest

    from mmgen.training.checkpoints import checkpoints, writing_checkpoint

    with writing_checkpoint(tmp_path, 1) as ckpt:
        (ckpt / "weights").write_text("w")
    with pytest.raises(OSError), writing_checkpoint(tmp_path, 2) as ckpt:
        (ckpt / "weights").write_text("half")
        raise OSError("no space left on device")
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-1"]
    (tmp_path / "checkpoints" / ".step-3.partial").mkdir()  # as a killed run leaves it
    with writing_checkpoint(tmp_path, 4, keep=2) as ckpt:
        (ckpt / "weights").write_text("w")
    assert [p.name for p in checkpoints(tmp_path)] == ["step-1", "step-4"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-1", "step-4"]


def _header(out):
    return json.loads((out / "train_log.jsonl").read_text().splitlines()[0])


def test_mixed_precision_bf16_trains_and_the_log_says_what_ran(tmp_path, monkeypatch):
    """bf16 autocast on the CPU: accelerate rebuilds the models' outputs from dicts and the codebook's EMA takes
    bfloat16 encoder outputs. bf16 set by accelerate (`accelerate launch --mixed_precision bf16` sets this variable)
    applies when --mixed-precision is not given, and a later run in the same process gets its own precision."""
    gan = ["--adversarial", "--disc-start", "0", "--photo-fraction", "0"]
    main(_args(tmp_path / "a", "--steps", "2", "--mixed-precision", "bf16", *gan))
    assert (tmp_path / "a" / "vqvae" / "config.json").is_file()  # trained to the end
    header = _header(tmp_path / "a")
    assert header["mixed_precision"] == "bf16" and header["num_processes"] == 1
    assert {"g_adv", "d_loss"} <= set(json.loads((tmp_path / "a" / "train_log.jsonl").read_text().splitlines()[-2]))

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    main(_args(tmp_path / "b", "--steps", "1", "--photo-fraction", "0"))
    assert _header(tmp_path / "b")["mixed_precision"] == "bf16"  # accelerate's setting, not dropped for "no"
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION")
    main(_args(tmp_path / "c", "--steps", "1", "--photo-fraction", "0"))
    assert _header(tmp_path / "c")["mixed_precision"] == "no"  # not the bf16 of the runs before in this process


def test_validation_follows_val_every_not_log_every(tmp_path):
    out = tmp_path / "run"
    main(_args(out, "--steps", "4", "--log-every", "3", "--val-every", "2", "--photo-fraction", "0"))
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = {r["step"]: r for r in records if "step" in r}
    assert sorted(steps) == [2, 3, 4]
    assert set(steps[2]) == {"step", "val_psnr"} and "val_psnr" not in steps[3] and "loss" not in steps[2]
    assert {"loss", "val_psnr"} <= set(steps[4])  # the last step: both
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step-2.png", "step-4.png"]


def test_the_card_says_the_global_batch_of_a_multi_process_run(tmp_path):
    """--batch-size is per process: a stage run by 2 processes of 16 trained batches of 32. A log from before the
    process count was logged ran one process, and reads as before."""
    from mmgen.model_card_tokenizer import tokenizer_training

    args = {"seed": 0, "batch_size": 16, "resolution": 64, "lr": 1e-3, "steps": 10, "photo_fraction": 0}
    for n, said in ((2, "batch 32 (2 processes x 16) at"), (None, "batch 16 at")):
        header = {"command": "mmgen train-tokenizer", "args": args} | ({"num_processes": n} if n else {})
        lines = [header, {"done": True, "steps": 10, "train_time_s": 60.0}]
        (tmp_path / "vqvae_train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
        assert said in tokenizer_training(tmp_path)


def test_the_recipe_runner_takes_the_cpu_as_the_trainers_do(tmp_path, monkeypatch):
    """Without a GPU the trainers' Accelerator uses the CPU (cpu=True); the recipe runner's PartialState, made first,
    must too, or under `accelerate launch --multi_gpu` each process would be a main process of its own."""
    import argparse

    from mmgen.training import processes, recipe

    made = []

    class State:
        is_main_process = True

        def __init__(self, cpu, timeout):
            made.append(cpu)
            assert timeout == processes.GROUP_TIMEOUT  # the main process encodes while the others wait

        def print(self, *_):
            pass

        def wait_for_everyone(self):
            pass

    monkeypatch.setattr(recipe, "PartialState", State)
    monkeypatch.setattr(processes, "gpu_present", lambda: False)
    stage = recipe.Stage("tokenizer", argparse.Namespace(cpu=False, out=str(tmp_path / "run")), {})
    recipe.run_stages([stage], train=lambda args: None, publish=lambda stage: None)
    assert made == [True]


def test_images_that_failed_to_decode_are_counted_over_every_process():
    """Under two processes each reads its share of the folder: the count was the main process's alone (a bad image
    the other one read went unsaid)."""
    from types import SimpleNamespace

    import torch

    from mmgen.training import train_tokenizer

    said, paths = [], ["/d/a.png", "/d/b.png", "/d/c.png"]
    other = torch.tensor([1.0, 1.0, 0.0])  # the other process failed on a.png (as this one did) and b.png
    accelerator = SimpleNamespace(num_processes=2, device="cpu", print=said.append, reduce=lambda t, op: t + other)
    mine = SimpleNamespace(paths=paths, failed={"/d/a.png": "truncated"})
    assert train_tokenizer.failed_to_decode(mine, accelerator) == {"failed_to_decode": 2}
    assert said == ["2 images failed to decode; their neighbours stood in (e.g. a.png, b.png)"]
