import json

import torch
from safetensors import safe_open

from mmgen.eval.eval_tokenizer import evaluate
from mmgen.models.vqvae import VQVAE
from mmgen.release import release_vqvae, write_model_card


def test_release_writes_fp16_weights_log_and_card(tmp_path, tiny_model_dir):
    run = tmp_path / "run"
    (run / "vqvae").mkdir(parents=True)
    VQVAE.from_pretrained(tiny_model_dir, subfolder="vqvae").save_pretrained(run / "vqvae")
    header = {
        "command": "mmgen train-tokenizer --steps 2",
        "config": {"num_codes": 64, "code_dim": 4, "block_channels": [8, 16, 16]},
        "args": {"seed": 0, "photo_fraction": 0.5, "batch_size": 4, "resolution": 32, "lr": 0.001},
    }
    rows = [
        {"step": 200, "loss": 0.1, "psnr": 20.0, "usage": 0.9, "perplexity": 30.0, "elapsed_s": 5.0, "val_psnr": 19.5},
        {"done": True, "steps": 200, "train_time_s": 60.0},
    ]
    (run / "train_log.jsonl").write_text("\n".join(json.dumps(r) for r in [header, *rows]) + "\n")

    out = tmp_path / "assets"
    release_vqvae(run / "vqvae", out)
    with safe_open(out / "vqvae" / "diffusion_pytorch_model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys() if k != "quantizer.initialized"} == {torch.float16}
    assert (out / "vqvae_train_log.jsonl").exists()

    results = evaluate(VQVAE.from_pretrained(out / "vqvae", dtype=torch.float32).eval(), n_shapes=4)
    (out / "eval_tokenizer.json").write_text(json.dumps(results))
    card = write_model_card(out).read_text()
    assert "mmgen train-tokenizer --steps 2" in card and "1.0 min" in card
    assert f"{results['shapes']['psnr']:.2f} dB" in card and "| 200 |" in card


def test_release_generator_ships_fp16_without_the_text_encoder(tmp_path, tiny_pipe):
    from mmgen.pipeline import MMGenPipeline
    from mmgen.release import generator_card_section, release_generator

    run, out = tmp_path / "run", tmp_path / "assets"
    tiny_pipe.transformer.save_pretrained(run / "transformer")
    # the run trained v-prediction: the release must sample with the run's noise schedule, not a default one
    type(tiny_pipe.scheduler).from_config(
        tiny_pipe.scheduler.config, prediction_type="v_prediction", timestep_spacing="leading"
    ).save_pretrained(run / "scheduler")
    tiny_pipe.vqvae.to(torch.float16).save_pretrained(out / "vqvae")
    header = {
        "command": "mmgen train-generator --steps 500",
        "distinct_captions": 9,
        "args": {
            "seed": 0,
            "num_samples": 10,
            "caption_dropout": 0.1,
            "batch_size": 4,
            "lr": 3e-4,
            "warmup_steps": 5,
            "snr_gamma": 5.0,
            "ema_decay": 0.99,
            "mixed_precision": "no",
        },
    }
    rows = [{"step": 500, "loss": 0.2, "elapsed_s": 30.0}, {"done": True, "steps": 500, "train_time_s": 120.0}]
    (run / "train_log.jsonl").write_text("\n".join(json.dumps(r) for r in [header, *rows]) + "\n")

    release_generator(run, out, scheduler="unipc")
    index = json.loads((out / "model_index.json").read_text())
    assert index["text_encoder"] == [None, None] and index["tokenizer"] == [None, None]
    with safe_open(out / "transformer" / "diffusion_pytorch_model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}

    pipe = MMGenPipeline.from_pretrained(out, text_encoder=tiny_pipe.text_encoder)  # tiny BERT: not MiniLM's width
    assert type(pipe.scheduler).__name__ == "UniPCMultistepScheduler"
    config = pipe.scheduler.config
    assert config.prediction_type == "v_prediction" and config.timestep_spacing == "leading"
    assert pipe.transformer.dtype == torch.float32 and pipe.tokenizer is not None  # the bundled MiniLM tokenizer
    pipe.set_progress_bar_config(disable=True)
    assert pipe("a red circle", num_inference_steps=2).tokens.shape == (1, 8, 8)

    card = generator_card_section(out)
    assert "mmgen train-generator --steps 500" in card and "2.0 min" in card and "| 500 | 0.2000 | 30 |" in card
    assert "Min-SNR-5 (x0 weight min(SNR, 5))" in card  # a run logged before --loss-weighting existed
    assert "timesteps drawn uniformly" in card  # nor --timestep-sampling
    assert "cross-attention to all-MiniLM-L6-v2 token states" in card and "joint attention" not in card
    assert "two-object scenes" not in card

    header["args"]["two_object_share"] = 0.6
    (run / "train_log.jsonl").write_text("\n".join(json.dumps(r) for r in [header, *rows]) + "\n")
    release_generator(run, out, scheduler="unipc")
    assert "Batches drawn with 60% two-object scenes" in generator_card_section(out)

    header["args"]["loss_weighting"] = "min-snr-1"
    (run / "train_log.jsonl").write_text("\n".join(json.dumps(r) for r in [header, *rows]) + "\n")
    release_generator(run, out, scheduler="unipc")
    assert "`min-snr-1` (x0 weight min(SNR + 1, 5))" in generator_card_section(out)
    assert "object-loss-weight" not in generator_card_section(out)

    header["args"]["object_loss_weight"] = 4.0
    (run / "train_log.jsonl").write_text("\n".join(json.dumps(r) for r in [header, *rows]) + "\n")
    release_generator(run, out, scheduler="unipc")
    assert "object cells weighted 4x (`--object-loss-weight`)" in generator_card_section(out)
    assert "grounding" not in generator_card_section(out)
    header["args"]["grounding_loss_weight"] = 0.1
    (run / "train_log.jsonl").write_text("\n".join(json.dumps(r) for r in [header, *rows]) + "\n")
    release_generator(run, out, scheduler="unipc")
    assert (
        "object cells weighted 4x (`--object-loss-weight`), plus 0.1 x the token grounding loss on "
        "cross-attention (`--grounding-loss-weight`)"
    ) in generator_card_section(out).replace("\n", " ")
    del header["args"]["object_loss_weight"], header["args"]["grounding_loss_weight"]

    header["args"]["timestep_sampling"] = "logit-normal"
    (run / "train_log.jsonl").write_text("\n".join(json.dumps(r) for r in [header, *rows]) + "\n")
    release_generator(run, out, scheduler="unipc")
    assert "timesteps drawn `logit-normal` (`--timestep-sampling`)" in generator_card_section(out)
    del header["args"]["timestep_sampling"]

    stage2 = {
        **header,
        "command": "mmgen train-generator --init-from assets/mmgen-base --steps 500",
        "stage": 2,
        "args": {**header["args"], "init_from": "assets/mmgen-base", "data_seed": 1, "lr": 2e-4},
    }
    rows2 = [{"step": 500, "loss": 0.1, "elapsed_s": 12.0}, {"done": True, "steps": 500, "train_time_s": 60.0}]
    (run / "train_log.jsonl").write_text("\n".join(json.dumps(r) for r in [header, *rows, stage2, *rows2]) + "\n")
    release_generator(run, out, scheduler="unipc")
    card = generator_card_section(out)
    assert "in 2 stages" in card and "1. `mmgen train-generator --steps 500`" in card
    assert "2. `mmgen train-generator --init-from assets/mmgen-base --steps 500`" in card
    assert "Starts from `assets/mmgen-base`" in card and "(stream 1)" in card
    assert "Training time in all: 3.0 min on a 2-core CPU (no GPU), plus encoding the data." in card
    header["encoding_s"], stage2["encoding_s"] = 90.0, 30.0  # logged by the trainer since run 29's fifth stage
    (run / "train_log.jsonl").write_text("\n".join(json.dumps(r) for r in [header, *rows, stage2, *rows2]) + "\n")
    release_generator(run, out, scheduler="unipc")
    assert "Training time in all: 3.0 min on a 2-core CPU (no GPU), plus 2.0 min encoding the data." in (
        generator_card_section(out)
    )
    assert "| 1 | 500 | 0.2000 | 30 |" in card and "| 2 | 500 | 0.1000 | 12 |" in card

    row = {
        "scheduler": "euler-ancestral",
        "guidance": 4.0,
        "steps": 20,
        "single_all": 0.9,
        "single_shape": 0.9,
        "single_position": 1.0,
        "two_all": 0.3,
        "n_single": 96,
        "n_two": 256,
        "seconds": 60,
        "guidance_interval": [250.0, 999.0],
    }
    sweep_rows = [dict(row, guidance=g, codebook_snap=s) for g in (3.0, 4.0) for s in (0.0, 0.5)]
    (out / "generator_snap_sweep.json").write_text(json.dumps({"prompt_seed": 777, "rows": sweep_rows}))
    card = " ".join(generator_card_section(out).split())  # the command in the card is wrapped
    assert (
        "--sweep-schedulers euler-ancestral --sweep-guidance 3 4 --sweep-codebook-snap 0 0.5 --sweep-n-single 96 "
        "--sweep-n-two 256"
    ) in card
    assert "| euler-ancestral | 4 | t 250..999 | 0.5 | 90.0% |" in card
    assert "Best mean of single-object and two-object" in card and "The default (guidance 4, snap 0.5)" in card
    everywhere = [dict(r, guidance_interval=None) if r["codebook_snap"] == 0.0 else r for r in sweep_rows]
    (out / "generator_snap_sweep.json").write_text(json.dumps({"prompt_seed": 777, "rows": everywhere}))
    card = " ".join(generator_card_section(out).split())  # a row that guided every step says so
    assert "| guided in |" in card and "| euler-ancestral | 3 | every step | 0 |" in card
    before = [{k: v for k, v in r.items() if k != "guidance_interval"} for r in sweep_rows]  # sweeps before run 30
    (out / "generator_snap_sweep.json").write_text(json.dumps({"prompt_seed": 777, "rows": before}))
    card = " ".join(generator_card_section(out).split())  # ... carried no interval: no column, and no default row
    assert "| guided in |" not in card and "The default (guidance 4" not in card

    # --sweep-free rows: a setting whose free prompts take fewer than 5 cells is not chosen, however accurate
    free = {(3.0, 0.0): 6, (3.0, 0.5): 5, (4.0, 0.0): 5, (4.0, 0.5): 4}
    free_rows = [
        dict(
            r,
            free_min=free[r["guidance"], r["codebook_snap"]],
            two_all=0.5 if r["guidance"] == 4.0 and r["codebook_snap"] == 0.5 else 0.3 + r["guidance"] / 100,
        )
        for r in sweep_rows
    ]
    (out / "generator_snap_sweep.json").write_text(json.dumps({"prompt_seed": 777, "rows": free_rows}))
    card = " ".join(generator_card_section(out).split())
    assert "--sweep-n-two 256 --sweep-free`" in card and "| free: fewest cells |" in card
    assert "| euler-ancestral | 4 | t 250..999 | 0.5 | 90.0% | 90.0% | 100.0% | 50.0% | 4 | 60 |" in card
    assert "among the settings whose free prompts take at least 5 cells: guidance 4, snap 0 (62.0%)" in card
    twice = [dict(r, two_drawn_twice=0.25) for r in free_rows]  # a sweep run since the judge counts objects
    (out / "generator_snap_sweep.json").write_text(json.dumps({"prompt_seed": 777, "rows": twice}))
    card = " ".join(generator_card_section(out).split())
    assert "| two: an object drawn twice |" in card
    assert "| euler-ancestral | 4 | t 250..999 | 0.5 | 90.0% | 90.0% | 100.0% | 50.0% | 25.0% | 4 | 60 |" in card
    few = [dict(r, free_min=3) for r in free_rows]
    (out / "generator_snap_sweep.json").write_text(json.dumps({"prompt_seed": 777, "rows": few}))
    assert "(no setting's free prompts take 5 cells): guidance 4, snap 0.5 (70.0%)" in generator_card_section(out)

    cand_rows = [dict(r, num_candidates=n, two_all=0.3 + n / 100) for r, n in zip(twice[-1:] * 2, (1, 4))]
    (out / "generator_candidates_sweep.json").write_text(json.dumps({"prompt_seed": 777, "rows": cand_rows}))
    card = " ".join(generator_card_section(out).split())
    assert "--sweep-codebook-snap 0.5 --sweep-candidates 1 4 --sweep-n-single 96 --sweep-n-two 256" in card
    assert "| euler-ancestral | 4 | t 250..999 | 0.5 | 4 | 90.0% | 90.0% | 100.0% | 34.0% | 25.0% | 4 | 60 |" in card
    colored = [dict(r, single_color=0.985) for r in cand_rows]  # sweeps since run 29's report single colour
    (out / "generator_candidates_sweep.json").write_text(json.dumps({"prompt_seed": 777, "rows": colored}))
    card = " ".join(generator_card_section(out).split())
    assert "| single: all | single: colour | single: shape |" in card
    assert "| t 250..999 | 0.5 | 4 | 90.0% | 98.5% | 90.0% | 100.0% | 34.0% | 25.0% | 4 | 60 |" in card

    ev = {
        "single": {"color": 1.0, "all": 0.9, "n": 4},
        "two": {"count": 0.75, "all": 0.5, "n": 4},
        "extra_objects": {"two": {"more objects than named": 0.25, "a named object drawn twice": 0.5}},
        "settings": {
            "scheduler": "UniPCMultistepScheduler",
            "steps": 30,
            "guidance_scale": 4.0,
            "guidance_interval": [250.0, 999.0],
            "num_candidates": 4,
        },
    }
    (out / "eval_generator.json").write_text(json.dumps(ev))
    card = generator_card_section(out)
    assert "best of 4 starting noise(s)" in " ".join(card.split())
    assert "guidance 4.0 (guided in t 250..999), codebook snap" in " ".join(card.split())
    assert "| two (4 prompts) | count | 75.0% |  |" in card and "| two (4 prompts) | all | 50.0% | >= 60% |" in card
    assert "| two | images with a named object drawn twice | 50.0% | |" in card and "Tokenizer ceiling" not in card
    ceiling = {
        "two": {"rendered": {"shapes": 1.0, "all": 1.0, "n": 8}, "tokenized": {"shapes": 0.875, "all": 0.75, "n": 8}}
    }
    (out / "eval_generator.json").write_text(json.dumps(ev | {"tokenizer_ceiling": ceiling}))
    card = generator_card_section(out)
    assert "Tokenizer ceiling" in card and "(8 two)" in " ".join(card.split())
    assert "| two | shapes | 100.0% | 87.5% |" in card and "| two | all | 100.0% | 75.0% |" in card

    config_path = out / "transformer" / "config.json"
    config_path.write_text(json.dumps(json.loads(config_path.read_text()) | {"joint_attention": True}))
    card = generator_card_section(out)
    assert "joint attention (MM-DiT blocks" in card and "cross-attention to" not in card


def test_large_weights_ship_in_shards_that_load_back(tmp_path, tiny_pipe, monkeypatch):
    import mmgen.release
    from mmgen.pipeline import MMGenPipeline
    from mmgen.release import release_generator

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
