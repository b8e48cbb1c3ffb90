import json

from PIL import Image

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
    out = tmp_path / "run"
    main(_args(out, "--steps", "4"))
    assert VQVAE.from_pretrained(out / "vqvae").config.num_codes == 64
    assert (out / "checkpoints" / "step-3" / "vqvae").is_dir()
    assert (out / "checkpoints" / "step-3" / "training_state.pt").is_file()
    assert (out / "samples" / "step-4.png").is_file()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["command"].startswith(("mmgen", "pytest", "python", "__main__"))
    assert {"loss", "psnr", "usage", "perplexity"} <= set(log[1])

    main(_args(out, "--steps", "6", "--resume"))  # continues from step-3, not from scratch
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in log if "step" in r]
    assert steps == [2, 4, 4, 6], steps


def test_same_seed_same_weights(tmp_path):
    import torch

    main(_args(tmp_path / "a", "--steps", "2"))
    main(_args(tmp_path / "b", "--steps", "2"))
    a = VQVAE.from_pretrained(tmp_path / "a" / "vqvae").state_dict()
    b = VQVAE.from_pretrained(tmp_path / "b" / "vqvae").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_trains_on_a_user_image_folder(tmp_path):
    data = tmp_path / "imgs"
    data.mkdir()
    for i in range(3):
        Image.new("RGB", (48, 40), (80 * i, 20, 200)).save(data / f"{i}.jpg")
    main(_args(tmp_path / "run", "--steps", "2", "--data", str(data)))
    assert (tmp_path / "run" / "vqvae" / "config.json").exists()
