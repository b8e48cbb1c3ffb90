"""Tokenizers side by side: the comparison's figures, the ambiguity map and `mmgen compare-tokenizers`."""

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from tokenizer_families import make_family

from mmgen.cli import main
from mmgen.compare import (
    bits_per_image,
    common_crop,
    compare_tokenizers,
    compression_ratio,
    error_map,
    format_table,
    quantization_ambiguity,
)
from mmgen.data.shapes import shapes_sample
from mmgen.images import pil_to_tensor
from mmgen.metrics import detail_kept, edges_in_place
from mmgen.tokenizers import as_tokenizer, load_tokenizer


@pytest.fixture
def photo() -> Image.Image:
    """A 70x52 picture with edges everywhere (not a multiple of any factor, to exercise the common crop)."""
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (52, 70, 3), dtype=np.uint8)).resize((70, 52))


def test_figures_of_a_known_case(photo):
    assert detail_kept(photo, photo) == pytest.approx(1.0)
    assert detail_kept(photo, photo.filter(ImageFilter.GaussianBlur(2))) < 0.5
    assert math.isnan(detail_kept(Image.new("RGB", (8, 8), "red"), photo.crop((0, 0, 8, 8))))
    assert edges_in_place(photo, photo) == pytest.approx(1.0)
    assert math.isnan(edges_in_place(Image.new("RGB", (8, 8), "red"), photo.crop((0, 0, 8, 8))))
    assert bits_per_image((16, 16), 512) == 16 * 16 * 9
    assert compression_ratio((64, 64), 16 * 16 * 9) == pytest.approx(64 * 64 * 24 / 2304)
    errors = error_map(photo, Image.new("RGB", photo.size, (0, 0, 0)))
    assert errors.shape == (52, 70) and np.allclose(errors, np.asarray(photo, dtype=np.float32).mean(2))
    with pytest.raises(ValueError, match="differ in size"):
        error_map(photo, photo.crop((0, 0, 8, 8)))


def test_invented_texture_is_detail_but_not_edges_in_place():
    """A deliberately wrong reconstruction: the photo blurred, then noise added. It looks worse than the blur
    alone to anyone, and detail kept calls it sharper than the original; edges in place is not fooled."""
    rng = np.random.default_rng(1)
    photo = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).resize((128, 128), Image.BICUBIC)
    blurred = photo.filter(ImageFilter.GaussianBlur(1.5))
    noise = rng.normal(0, 12, (128, 128, 1))
    noisy = Image.fromarray(np.clip(np.asarray(blurred, dtype=np.float64) + noise, 0, 255).astype(np.uint8))
    assert detail_kept(photo, blurred) < 0.7 and detail_kept(photo, noisy) > 1.0
    assert edges_in_place(photo, noisy) == pytest.approx(edges_in_place(photo, blurred), abs=0.05)
    assert edges_in_place(photo, noisy) < 0.7
    shifted = Image.fromarray(np.roll(np.asarray(photo), 5, axis=1))  # every edge drawn, in the wrong place
    assert detail_kept(photo, shifted) == pytest.approx(1.0, abs=0.05) and edges_in_place(photo, shifted) < 0.3


def test_ambiguity_by_hand():
    codebook = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    z = torch.tensor([[0.4, 0.0], [0.0, 2.0]]).T.reshape(1, 2, 1, 2)  # two tokens, (B, D, h, w)
    amb = quantization_ambiguity(z, codebook)
    assert amb.nearest.tolist() == [[[0, 2]]] and amb.runner_up.tolist() == [[[1, 0]]]
    assert torch.allclose(amb.distance, torch.tensor([[[0.4, 1.0]]]))
    assert torch.allclose(amb.margin, torch.tensor([[[0.2, 1.0]]]))  # 0.6 - 0.4 and 2 - 1
    with pytest.raises(ValueError, match="codebook must be"):
        quantization_ambiguity(z, codebook[:, :1])


@pytest.mark.parametrize("which", ["movq", "mmgen"])
def test_ambiguity_agrees_with_the_tokenizer(which, tiny_model_dir):
    tok = load_tokenizer(tiny_model_dir) if which == "mmgen" else as_tokenizer(make_family("movq"))
    x = torch.stack([pil_to_tensor(shapes_sample(3, i).image) for i in range(2)])
    enc = tok.encode(x)
    amb = quantization_ambiguity(enc.unquantized, tok.codebook, tok.metric)
    assert torch.equal(amb.nearest, enc.indices)  # the chosen code, in the quantiser's own metric
    assert (amb.margin >= 0).all() and (amb.distance >= -1e-6).all() and (amb.runner_up != amb.nearest).all()
    small = quantization_ambiguity(enc.unquantized, tok.codebook, tok.metric, chunk=7)  # chunks change nothing
    assert torch.equal(small.nearest, amb.nearest)
    torch.testing.assert_close(small.margin, amb.margin, atol=1e-5, rtol=0)


def test_compare_sees_the_same_pixels(photo, tiny_model_dir):
    tokenizers = [load_tokenizer(tiny_model_dir), as_tokenizer(make_family("amused"), "amused-like")]
    rows = compare_tokenizers(photo, tokenizers)
    assert [r.image.size for r in rows] == [(64, 48), (64, 48)]  # a multiple of 4 and 16: lcm 16
    assert rows[0].image is rows[1].image
    assert [r.grid for r in rows] == [(12, 16), (3, 4)]
    assert rows[1].bits == pytest.approx(12 * math.log2(64)) and rows[1].compression > rows[0].compression
    for r in rows:
        assert r.reconstruction.size == (64, 48) and np.isfinite(r.psnr) and r.detail_kept > 0
    table = format_table(rows)
    assert "amused-like (64 codes, f16)" in table and "4x3" in table and len(table.splitlines()) == 4
    assert rows[0].row()["grid"] == "16x12"  # columns x rows, as the image is 64x48
    # the models themselves, as loaded (pipe.vqvae, load_vqvae): an AttributeError ('VQVAE' has no 'label')
    same = compare_tokenizers(photo, [load_tokenizer(tiny_model_dir).model, make_family("amused")])
    assert [r.psnr for r in same] == pytest.approx([r.psnr for r in rows])


def test_images_handed_in_are_read_as_files_are(tiny_model_dir):
    """A PIL image given to the library directly: transparency on white (not black), 16-bit grey scaled (not clipped
    white), EXIF rotation applied, as `load_image` reads files."""
    from mmgen.tokens import encode_image

    tok = load_tokenizer(tiny_model_dir)
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[:, 16:] = (255, 0, 0, 255)  # the left half transparent, black underneath
    grey16 = Image.fromarray(np.tile(np.linspace(0, 65535, 32).astype(np.uint16), (32, 1)))
    turned = Image.new("RGB", (64, 32), (0, 128, 255))
    exif = turned.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    turned.info["exif"] = exif.tobytes()
    turned = Image.open(_saved(turned, exif))
    for image, mean, size in [
        (Image.fromarray(rgba, "RGBA"), (255, 127.5, 127.5), (32, 32)),
        (grey16, (127.5,) * 3, (32, 32)),
        (turned, None, (32, 64)),
    ]:
        seen = common_crop(image, [tok])
        assert seen.size == size and encode_image(tok, image).image.size == size
        if mean:
            assert np.asarray(seen, np.float32).mean((0, 1)) == pytest.approx(mean, abs=1)


def _saved(image: Image.Image, exif) -> io.BytesIO:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    buffer.seek(0)
    return buffer


def test_cli_compare_tokenizers(photo, tiny_model_dir, tmp_path, capsys):
    make_family("vq-diffusion").save_pretrained(tmp_path / "vqd")
    photo.save(tmp_path / "photo.png")
    shapes_sample(0, 0).image.save(tmp_path / "scene.png")
    out = tmp_path / "sheet.png"
    args = ["compare-tokenizers", str(tmp_path / "photo.png"), str(tmp_path / "scene.png")]
    assert main([*args, "--tokenizer", tiny_model_dir, "--tokenizer", str(tmp_path / "vqd"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("PSNR dB") == 2 and "vqd (48 codes, f8)" in printed and "(64x48 as compared)" in printed
    sheet = Image.open(out)
    # 3 columns (original, 2 tokenizers) of 128 px: images enlarged 2x so that the labels fit; per image a row of
    # reconstructions and a row of error maps (64x48 and 64x64 as compared)
    assert sheet.size == (4 + 3 * (128 + 4), 14 + 2 * 96 + 2 * 128 + 5 * 4)
    # each image is enlarged by its own factor: a 16-px image beside the photo once enlarged the photo 8x too
    shapes_sample(0, 0).image.resize((16, 16)).save(tmp_path / "tiny.png")
    tokenizers = ["--tokenizer", tiny_model_dir, "--tokenizer", str(tmp_path / "vqd"), "--out", str(out)]
    assert main(["compare-tokenizers", str(tmp_path / "photo.png"), str(tmp_path / "tiny.png"), *tokenizers]) == 0
    assert Image.open(out).width == 4 + 3 * (128 + 4)

    assert main([*args, "--tokenizer", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nothing" in err and "Traceback" not in err


def test_cli_encode_and_decode_with_another_tokenizer(tmp_path, capsys):
    import json

    make_family("ldm-f4").save_pretrained(tmp_path / "ldm" / "vqvae")
    image = tmp_path / "scene.png"
    shapes_sample(0, 1).image.save(image)
    assert main(["encode", str(image), "--out", str(tmp_path / "enc"), "--tokenizer", str(tmp_path / "ldm")]) == 0
    doc = json.loads((tmp_path / "enc" / "tokens.json").read_text())
    assert doc["num_codes"] == 32 and doc["shape"] == [16, 16]
    decoded = tmp_path / "dec.png"
    argv = ["decode", str(tmp_path / "enc" / "tokens.json"), "--out", str(decoded), "--tokenizer"]
    assert main([*argv, str(tmp_path / "ldm")]) == 0
    assert np.array_equal(
        np.asarray(Image.open(decoded)), np.asarray(Image.open(tmp_path / "enc" / "reconstruction.png"))
    )


def test_encode_records_where_its_tokenizer_is_for_a_decode_run_elsewhere(tmp_path, monkeypatch):
    """A folder given relative to one working directory: decode, run from another, finds it by the file alone."""
    make_family("ldm-f4").save_pretrained(tmp_path / "ldm" / "vqvae")
    shapes_sample(0, 1).image.save(tmp_path / "scene.png")
    monkeypatch.chdir(tmp_path)
    assert main(["encode", "scene.png", "--out", "enc", "--tokenizer", "ldm"]) == 0
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["decode", str(tmp_path / "enc" / "tokens.json"), "--out", "dec.png"]) == 0
    shown = np.asarray(Image.open(tmp_path / "enc" / "reconstruction.png"))
    assert np.array_equal(np.asarray(Image.open("dec.png")), shown)


def test_heat_pictures_are_pure_and_sized():
    from mmgen.viz import colorbar, heat_colours, heatmap, side_by_side

    colours = heat_colours(np.array([0.0, 5.0, 10.0, 99.0]), 0, 10)
    assert colours.dtype == np.uint8 and colours[0].tolist() == [0, 0, 4] and colours[-1].tolist() == [252, 255, 164]
    assert colours[2].tolist() == colours[3].tolist()  # clipped above vmax
    assert (colours[:3].astype(int).sum(1) == sorted(colours[:3].astype(int).sum(1))).all()  # brighter with value
    amb = heatmap(torch.rand(3, 5), 0, 1, cell=8)
    assert amb.size == (40, 24) and amb.mode == "RGB"
    assert colorbar(0, 1, "margin", width=100).size == (100, 44)
    with pytest.raises(ValueError, match="vmax must exceed"):
        heatmap(np.zeros((2, 2)), 1, 1)
    a, b = Image.new("RGB", (10, 8)), Image.new("RGB", (6, 6))
    sheet = side_by_side([[a, b], [b, a]], ["x", "y"], scale=2, pad=1, label_height=5)
    assert sheet.size == (1 + 20 + 1 + 20 + 1, 5 + 1 + 16 + 1 + 16 + 1)


def test_the_margin_map_shows_the_median_mid_grey_not_dark():
    """Scaled to its largest margin, one far token made nearly every cell look "nearly flipped" (229 of 256 dark
    on a shipped example, against 5 counted)."""
    from mmgen.app.compare import ambiguity_sheet, margin_scale

    margin = np.ones((4, 4))
    margin[0, 0] = 100.0  # one token far from any other code
    assert margin_scale(margin) == 2.0  # the typical cell mid-grey, whatever the largest
    ambiguity_sheet(np.ones((4, 4)), margin)  # drawn on that scale
