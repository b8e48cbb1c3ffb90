import math

import numpy as np
import pytest
import torch
from PIL import Image

from mmgen.eval.eval_tokenizer import evaluate, even_usage, format_table, heldout_photos
from mmgen.models.vqvae import VQVAE


def test_heldout_photos_are_not_from_scikit_image():
    named = heldout_photos()
    assert len(named) == 15
    assert all(im.size == (256, 256) for _, im in named)
    assert not any(n.split("-")[0] in ("astronaut", "coffee", "chelsea", "camera", "rocket") for n, _ in named)


def test_evaluate_reports_every_figure(tiny_vq):
    results = evaluate(tiny_vq, n_shapes=4)
    assert {"shapes", "photos", "codebook"} <= set(results)
    s = results["shapes"]
    for key in ("psnr", "ssim", "readable_color", "readable_size", "readable_position", "usage", "perplexity"):
        assert key in s
    assert 0 <= s["readable_color"] <= 1 and -1 <= s["ssim"] <= 1
    assert 0 < results["codebook"]["usage"] <= 1
    table = format_table(results)
    assert "psnr" in table and ">= 34" in table and ">= 32" in table  # perplexity target: K/2 = 32


def test_an_f8_tokenizer_is_scored_on_128_px_scenes_against_its_own_targets():
    f8 = VQVAE(block_channels=(8, 8, 16, 16), encoder_layers=(0, 0, 1, 1), decoder_layers=(0, 0, 1, 1), num_codes=64)
    results = evaluate(f8.eval(), n_shapes=2)
    assert results["shapes"]["size"] == 128 and results["codebook"]["downsample_factor"] == 8
    assert 0 <= results["photos"]["detail_kept"] < 5
    assert results["photos"]["edges_in_place"] < 0.5  # an untrained decoder draws none of the photos' edges
    table = format_table(results)
    assert ">= 22" in table and ">= 0.9" in table  # photos PSNR and detail kept
    assert ">= 34" not in table and ">= 32" not in table  # the f4's shapes PSNR and perplexity targets


def test_even_usage_is_the_share_an_evenly_used_codebook_shows():
    assert even_usage(2048, 3840) == pytest.approx(0.847, abs=1e-3)  # an f16's 15 photo views: too few tokens
    assert even_usage(1024, 100_000) == pytest.approx(1.0)
    assert even_usage(64, 1) == pytest.approx(1 / 64)


def test_an_f16_tokenizer_counts_whole_photos_and_is_held_to_95_percent_codebook_use():
    f16 = VQVAE(block_channels=(4, 8, 8, 8, 8), encoder_layers=(0,) * 5, decoder_layers=(0,) * 5, num_codes=64)
    f16.quantizer.codebook.copy_(torch.nn.functional.normalize(torch.ones(64, f16.config.code_dim), dim=1))
    results = evaluate(f16.eval(), n_shapes=2)  # every code the same vector: one code ever chosen
    views = 15 * (256 // 16) ** 2
    assert results["photos"]["size"] == 256 and results["codebook"]["tokens"] > 2 * 256 + views
    assert results["codebook"]["usage"] == 1 / 64 and results["codebook"]["usage_even"] == pytest.approx(1.0)
    row = next(line for line in format_table(results).splitlines() if line.startswith("codebook  usage "))
    assert ">= 0.95" in row and row.endswith("NO")  # a collapsed codebook fails


def test_a_folder_evaluation_names_every_file_it_left_out(tiny_vq, tmp_path):
    """Files Pillow cannot read went unmentioned (and at first only the first three were named)."""
    from PIL import Image

    from mmgen.eval.eval_tokenizer import evaluate_folder

    for i in range(2):
        Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(tmp_path / f"ok{i}.png")
    for i in range(5):
        (tmp_path / f"bad{i}.png").write_bytes(b"not an image")
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "gone.png", "text": "x"}\nnot json\n')
    stats = evaluate_folder(tiny_vq, tmp_path)["folder"]
    assert stats["n_images"] == 2 and sorted(stats["left_out"]) == [f"bad{i}.png" for i in range(5)]


def test_psnr_and_ssim_read_known_values():
    """Both PSNRs (of images, of training's tensors) on two images 16 levels apart everywhere: 10 log10(255² / 16²)
    dB; SSIM is 1 for an image and itself and negative for it and its inverse."""
    from mmgen.metrics import psnr, ssim
    from mmgen.training.train_tokenizer import psnr as batch_psnr

    a = np.random.default_rng(0).integers(16, 240, (32, 32, 3)).astype(np.uint8)
    b = a + np.where(np.random.default_rng(1).random(a.shape) < 0.5, 16, -16).astype(np.uint8)
    expected = 10 * np.log10(255**2 / 16**2)  # 24.05 dB
    assert psnr(a, b) == pytest.approx(expected)
    assert psnr(Image.fromarray(a), Image.fromarray(b)) == pytest.approx(expected)
    as_tensor = [torch.from_numpy(x).permute(2, 0, 1)[None].double() / 127.5 - 1 for x in (a, b)]
    assert batch_psnr(*as_tensor).item() == pytest.approx(expected)
    assert psnr(a, a) > 90  # no error: as high as the floor allows
    assert ssim(a, a) == pytest.approx(1.0) and ssim(Image.fromarray(a), Image.fromarray(a)) == pytest.approx(1)
    assert ssim(a, 255 - a) < 0 and ssim(Image.fromarray(a), Image.fromarray(255 - a)) < 0
    assert math.isnan(ssim(a[:6, :6], a[:6, :6]))  # under SSIM's 7x7 window


def test_evaluate_scores_a_perfect_and_a_blank_reconstruction(tiny_vq, monkeypatch):
    """What the evaluation reads comes from the reconstructions: the images themselves read back right (and at the
    PSNR floor), blank canvases read back nothing."""
    from mmgen.eval import eval_tokenizer

    def perfect(vq, images, batch_size=32):
        return eval_tokenizer.Reconstruction([im.copy() for im in images], np.zeros((len(images), 1, 1), int))

    def blank(vq, images, batch_size=32):
        white = [Image.new("RGB", im.size, (245, 245, 245)) for im in images]
        return eval_tokenizer.Reconstruction(white, np.zeros((len(images), 1, 1), int))

    monkeypatch.setattr(eval_tokenizer, "reconstruct", perfect)
    right = evaluate(tiny_vq, n_shapes=6)
    assert right["shapes"]["readable_all"] == 1.0 and right["shapes"]["readable_all_strict"] == 1.0
    assert right["shapes"]["psnr"] > 90 and right["photos"]["psnr"] > 90 and right["shapes"]["ssim"] == 1.0
    assert right["photos"]["detail_kept"] == pytest.approx(1.0) and right["photos"]["edges_in_place"] == 1.0
    monkeypatch.setattr(eval_tokenizer, "reconstruct", blank)
    wrong = evaluate(tiny_vq, n_shapes=6)
    assert wrong["shapes"]["readable_all"] == 0.0 and wrong["shapes"]["readable_color"] == 0.0
    assert wrong["shapes"]["psnr"] < 20 and wrong["photos"]["detail_kept"] == 0.0
