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
    header = {"command": "mmgen train-tokenizer --steps 2", "config": {"num_codes": 64, "code_dim": 4,
              "block_channels": [8, 16, 16]}, "args": {"seed": 0, "photo_fraction": 0.5, "batch_size": 4,
              "resolution": 32, "lr": 0.001}}  # fmt: skip
    rows = [{"step": 200, "loss": 0.1, "psnr": 20.0, "usage": 0.9, "perplexity": 30.0, "elapsed_s": 5.0,
             "val_psnr": 19.5}, {"done": True, "steps": 200, "train_time_s": 60.0}]  # fmt: skip
    (run / "train_log.jsonl").write_text("\n".join(json.dumps(r) for r in [header, *rows]) + "\n")

    out = tmp_path / "assets"
    release_vqvae(run / "vqvae", out)
    with safe_open(out / "vqvae" / "diffusion_pytorch_model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys() if k != "quantizer.initialized"} == {torch.float16}
    assert (out / "vqvae_train_log.jsonl").exists()

    results = evaluate(VQVAE.from_pretrained(out / "vqvae", torch_dtype=torch.float32).eval(), n_shapes=4)
    (out / "eval_tokenizer.json").write_text(json.dumps(results))
    card = write_model_card(out).read_text()
    assert "mmgen train-tokenizer --steps 2" in card and "1.0 min" in card
    assert f"{results['shapes']['psnr']:.2f} dB" in card and "| 200 |" in card
