import io
import json

import numpy as np
import pytest
from PIL import Image

from mmgen import images as images_mod
from mmgen.data.images import ImageFolder, PhotoCrops, skimage_photos
from mmgen.images import ImageLoadError, fit_to_multiple, load_image


def _save(im, path, **kw):
    im.save(path, **kw)
    return path


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "CMYK", "LA", "I;16", "1"])
def test_any_mode_loads_as_rgb(tmp_path, mode):
    im = Image.new(mode, (20, 12))
    ext = "jpg" if mode == "CMYK" else ("tiff" if mode == "I;16" else "png")
    out = load_image(_save(im, tmp_path / f"x.{ext}"))
    assert out.mode == "RGB" and out.size == (20, 12)


def test_transparency_is_composited_on_white(tmp_path):
    out = load_image(_save(Image.new("RGBA", (4, 4), (255, 0, 0, 0)), tmp_path / "t.png"))
    assert out.getpixel((0, 0)) == (255, 255, 255)


def test_exif_rotation_is_applied(tmp_path):
    im = Image.new("RGB", (30, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    out = load_image(_save(im, tmp_path / "r.jpg", exif=exif))
    assert out.size == (10, 30)


def test_empty_file_gets_a_clear_error(tmp_path):
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(tmp_path / "e.png")


def test_non_image_gets_a_clear_error(tmp_path):
    (tmp_path / "n.png").write_text("hello, not an image")
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(tmp_path / "n.png")


def test_truncated_image_gets_a_clear_error(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, "PNG")
    (tmp_path / "t.png").write_bytes(buf.getvalue()[:60])
    with pytest.raises(ImageLoadError):
        load_image(tmp_path / "t.png")


def test_missing_file_gets_a_clear_error(tmp_path):
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "nope.png")


def test_absurdly_large_image_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(images_mod, "MAX_PIXELS", 10_000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    path = _save(Image.new("RGB", (150, 150)), tmp_path / "big.png")  # 22,500 px: over 2x the limit
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(path)
    path = _save(Image.new("RGB", (120, 100)), tmp_path / "big2.png")  # between 1x and 2x: Pillow only warns
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(path)


def test_fit_to_multiple_downscales_and_crops():
    out = fit_to_multiple(Image.new("RGB", (1001, 503)), 4, max_side=256)
    assert out.width <= 256 and out.width % 4 == 0 and out.height % 4 == 0
    with pytest.raises(ImageLoadError, match="too small"):
        fit_to_multiple(Image.new("RGB", (3, 50)), 4)


def test_photo_crops_are_deterministic_and_in_range():
    ds = PhotoCrops(skimage_photos(), length=4, size=32, seed=0)
    a, b = ds[1]["pixel_values"], ds[1]["pixel_values"]
    assert a.shape == (3, 32, 32) and np.array_equal(a.numpy(), b.numpy())
    assert a.min() >= -1 and a.max() <= 1


def test_image_folder_reads_captions(tmp_path):
    for i, size in enumerate([(40, 30), (10, 8)]):  # the second is smaller than the crop: upscaled
        Image.new("RGB", size, (i * 100, 0, 0)).save(tmp_path / f"{i}.png")
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "0.png", "text": "a red thing"}) + "\n")
    ds = ImageFolder(tmp_path, size=16)
    assert len(ds) == 2
    assert ds[0]["text"] == "a red thing" and ds[1]["text"] == ""
    assert ds[1]["pixel_values"].shape == (3, 16, 16)


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="no images"):
        ImageFolder(tmp_path)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "metadata.jsonl").write_text("{broken\n")
    assert ImageFolder(tmp_path).skip_summary() == (
        "left out 1 (metadata.jsonl lines that are not a JSON object with 'file_name': 1, e.g. line 1)"
    )


def test_a_training_run_inside_the_folder_is_not_data(tmp_path):
    """An --out inside --data: the run's sample grids are left out and counted, never trained on."""
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    (run / "train_log.jsonl").write_text("{}\n")
    Image.new("RGB", (20, 20)).save(run / "samples" / "step-2.png")
    ds = ImageFolder(tmp_path)
    assert [p.name for p in ds.paths] == ["a.png"]
    assert ds.skip_summary() == "left out 1 (images in a training run's folder: 1, e.g. run/samples/step-2.png)"
    # the run's folder given as the data (a run trained into its own image folder): said, not "no images found"
    with pytest.raises(ValueError, match="a training run's folder .* not an image folder"):
        ImageFolder(run)


def test_image_folder_reads_metadata_as_users_write_it(tmp_path, capsys):
    """A BOM (Notepad, Excel) and "./" names are read; text in another encoding is refused with the line, never
    read with replacement characters; entries for absent files are counted and named; with no caption at all, the
    error says where captions come from."""
    for name in ("cafe", "tea", "cup"):
        Image.new("RGB", (20, 20), (200, 0, 0)).save(tmp_path / f"{name}.png")
    lines = [
        {"file_name": "./cafe.png", "text": "an astronaut in a café"},
        {"file_name": "tea.png", "text": "green tea"},
        {"file_name": "Cup.PNG", "text": "a cup"},
    ]
    meta = tmp_path / "metadata.jsonl"
    meta.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n", encoding="utf-8-sig")
    ds = ImageFolder(tmp_path, captions_required=True)
    assert [p.name for p in ds.paths] == ["cafe.png", "tea.png"] and ds.captions[0] == ("an astronaut in a café",)
    assert ds.skip_summary() == (
        "left out 2 (metadata.jsonl entries for no image in the folder: 1, e.g. Cup.PNG; "
        "images without a caption: 1, e.g. cup.png)"
    )
    meta.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n", encoding="latin-1")
    with pytest.raises(ValueError, match="line 1 is not UTF-8 text; save the file as UTF-8"):
        ImageFolder(tmp_path, captions_required=True)
    capsys.readouterr()
    assert len(ImageFolder(tmp_path).paths) == 3  # the tokenizer needs no captions: it goes on without them
    assert len(ImageFolder(tmp_path).paths) == 3  # its validation set reads the folder again: the note is said once
    assert capsys.readouterr().out.count("is not UTF-8 text") == 1
    meta.write_text(json.dumps({"file_name": "tea.png", "caption": "green tea"}) + "\n")
    with pytest.raises(ValueError, match=r"images without a caption: 3, .*one JSON object per line: \{\"file_name\""):
        ImageFolder(tmp_path, captions_required=True)


def test_the_size_is_checked_from_the_header_before_any_decode(tmp_path, monkeypatch):
    """A 62-megapixel one-colour PNG is 60 kB on disk and 186 MB decoded: refused without decoding a pixel."""
    from PIL import ImageFile

    path = _save(Image.new("1", (8000, 7800)), tmp_path / "bomb.png")
    assert path.stat().st_size < 100_000

    def no_decoding(self):
        raise AssertionError("decoded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageLoadError, match="too large: 8000x7800 is over 16,000,000 pixels") as refused:
        load_image(path, max_pixels=16_000_000)
    assert refused.value.reason.startswith("image too large") and str(path) not in refused.value.reason


def test_an_image_over_pillows_bomb_warning_is_refused_without_the_warning(tmp_path, monkeypatch, recwarn):
    """Pillow's DecompressionBombWarning printed two lines before the one-line refusal (a 9000x9000 PNG)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # Pillow warns from here on, errs from twice it
    path = _save(Image.new("1", (1200, 1000)), tmp_path / "big.png")
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(path, max_pixels=500_000)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_a_large_jpeg_wanted_small_is_decoded_at_reduced_scale(tmp_path):
    path = _save(Image.new("RGB", (2000, 1500), (10, 200, 30)), tmp_path / "photo.jpg")
    assert load_image(path).size == (2000, 1500)
    assert load_image(path, max_side=256).size == (500, 375)  # 1/4 scale: the smallest that still covers 256
    assert load_image(path, max_pixels=1_000_000, max_side=256).size == (500, 375)  # the cap is on what is decoded
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(path, max_pixels=1_000_000)


def test_image_folder_skips_bad_data_with_counts(tmp_path):
    """Unreadable files, bad metadata lines and (for the generator) missing or empty captions are left out and
    counted, never a crash; a file that breaks after its header is replaced by the next image."""
    for name in ("a", "b", "c", "d"):
        Image.new("RGB", (20, 20), (200, 0, 0)).save(tmp_path / f"{name}.png")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    good = (tmp_path / "a.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])  # its header reads, its data does not
    lines = [
        {"file_name": "a.png", "text": "a red square"},
        {"file_name": "b.png", "text": "  "},
        {"file_name": "truncated.png", "text": "broken"},
        {"no_file_name": 1},
        {"file_name": "d.png", "text": 7},
    ]
    (tmp_path / "metadata.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n{broken\n")

    ds = ImageFolder(tmp_path, size=16)
    assert [p.name for p in ds.paths] == ["a.png", "b.png", "c.png", "d.png", "truncated.png"]
    assert ds.skipped == {
        "metadata.jsonl lines that are not a JSON object with 'file_name'": 2,
        "files Pillow cannot read": 2,
    }
    captioned = ImageFolder(tmp_path, size=16, captions_required=True)
    assert [p.name for p in captioned.paths] == ["a.png", "truncated.png"]
    assert captioned.skipped["images without a caption"] == 3
    item = captioned[1]  # truncated.png fails to decode: a.png stands in
    assert item["text"] == "a red square" and item["pixel_values"].shape == (3, 16, 16)
    assert list(captioned.failed) == [str(tmp_path / "truncated.png")]
    assert "images that failed to decode: 1" in captioned.skip_summary()

    (tmp_path / "a.png").unlink()
    with pytest.raises(ValueError, match="no image in the folder decodes"):
        ImageFolder(tmp_path, captions_required=True, size=16)[0]
    (tmp_path / "truncated.png").unlink()
    with pytest.raises(ValueError, match="no usable images; left out .*images without a caption: 3"):
        ImageFolder(tmp_path, captions_required=True)


def test_wide_grey_images_keep_their_range(tmp_path):
    """16-bit grey PNGs (0..65535) become 8-bit grey, not clipped to white as Pillow's convert does."""
    a = (np.linspace(0, 65535, 64).reshape(8, 8)).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "grey16.png")
    rgb = np.asarray(load_image(tmp_path / "grey16.png"))
    assert rgb.shape == (8, 8, 3) and rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255
    assert 120 <= rgb[4, 0, 0] <= 135  # the middle of the range stays in the middle
    f = Image.fromarray(np.full((4, 4), 0.5, np.float32), "F")
    f.save(tmp_path / "float.tiff")
    assert np.asarray(load_image(tmp_path / "float.tiff"))[0, 0, 0] == 128


def test_crops_of_large_scenes_hold_an_object_whole():
    from mmgen.data.images import object_crop
    from mmgen.data.shapes import COLORS, shapes_sample

    def pixels(image, color):  # pixels of exactly this palette colour (an object's interior)
        return int((np.asarray(image) == COLORS[color]).all(-1).sum())

    for i in range(60):
        s = shapes_sample(3, i, scale=2)
        crop = object_crop(s.image, s.labels, 64, 2, np.random.default_rng(i))
        assert crop.size == (64, 64)
        colors = [o["color"] for o in s.labels["objects"]]
        assert any(pixels(crop, c) == pixels(s.image, c) > 0 for c in colors), i  # one object whole


def test_own_data_that_used_to_stop_a_run_is_read_or_counted(tmp_path):
    """A bad EXIF block, a PNG text chunk too large to decode, a long thin strip, a named pipe, hidden files, a
    caption with half a surrogate pair and JSON that breaks the parser: each is read, or left out and counted, never
    a crash or a hang."""
    import os

    Image.new("RGB", (20, 20), (0, 0, 200)).save(tmp_path / "a.png")
    Image.new("RGB", (20, 20), (0, 200, 0)).save(tmp_path / "exif.png", exif=b"\xff" * 30)  # not a TIFF block
    assert load_image(tmp_path / "exif.png").getpixel((0, 0)) == (0, 200, 0)  # the pixels are fine
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("huge", "x" * (PngImagePlugin.MAX_TEXT_CHUNK + 1), zip=True)
    Image.new("RGB", (20, 20)).save(tmp_path / "chunk.png", pnginfo=info)
    with pytest.raises(ImageLoadError, match="chunk.png: could not decode the image"):
        load_image(tmp_path / "chunk.png")
    Image.new("RGB", (1, 200_000), (250, 0, 0)).save(tmp_path / "strip.png")  # scaled whole: 64 x 12.8M pixels
    os.mkfifo(tmp_path / "pipe.png")  # opening it would wait for a writer forever
    (tmp_path / ".ipynb_checkpoints").mkdir()  # Jupyter's copies, and macOS's ._ files: not data
    Image.new("RGB", (20, 20)).save(tmp_path / ".ipynb_checkpoints" / "a-checkpoint.png")
    (tmp_path / "._a.png").write_bytes(b"\x00\x05\x16\x07")
    lines = [
        '{"file_name": "a.png", "text": "a blue square"}',
        '{"file_name": "exif.png", "text": "a \\ud800 green square"}',
        "[" * 100_000,
        '{"file_name": "strip.png", "text": "' + "a red strip " * 300 + '"}',
    ]
    (tmp_path / "metadata.jsonl").write_text("\n".join(lines) + "\n")

    ds = ImageFolder(tmp_path, size=64, captions_required=True)
    assert [p.name for p in ds.paths] == ["a.png", "strip.png"]
    assert ds.skipped == {
        "hidden files (.ipynb_checkpoints/, macOS's ._ files)": 2,
        "files Pillow cannot read": 2,  # the pipe, and chunk.png (its text chunk comes before the pixels here)
        "captions with a broken character (a lone surrogate)": 1,
        "metadata.jsonl lines that are not a JSON object with 'file_name'": 1,
        "images without a caption": 1,  # exif.png, once its only caption went
    }
    strip = ds[1]["pixel_values"]
    assert strip.shape == (3, 64, 64) and strip[0].min() > 0.9  # a square of the strip, scaled up


def test_captions_from_metadata_csv_as_hugging_face_imagefolder_writes_it(tmp_path):
    for name in ("a", "b", "c"):
        Image.new("RGB", (20, 20)).save(tmp_path / f"{name}.png")
    (tmp_path / "metadata.csv").write_text(
        'file_name,text\na.png,"a cat, on a sofa"\nb.png,\n,a caption for no file\nghost.png,a ghost\n'
    )
    ds = ImageFolder(tmp_path, size=16, captions_required=True)
    assert [p.name for p in ds.paths] == ["a.png"] and ds.captions == [("a cat, on a sofa",)]
    assert ds.skipped == {
        "metadata.csv rows without a file_name": 1,
        "metadata.csv entries for no image in the folder": 1,
        "images without a caption": 2,
    }
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "b.png", "text": "a dog"}) + "\n")
    assert ImageFolder(tmp_path, size=16, captions_required=True).captions == [("a dog",)]  # jsonl first


def test_imagefolder_splits_are_named_not_mixed(tmp_path):
    """Hugging Face's imagefolder splits (train/ and test/, each with its metadata): read as one folder, the
    tokenizer trained on the test images too and the generator called every image uncaptioned."""
    for split in ("train", "test"):
        (tmp_path / split).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / split / "a.png")
        (tmp_path / split / "metadata.jsonl").write_text('{"file_name": "a.png", "text": "a cat"}\n')
    with pytest.raises(ValueError, match=r"test/, train/ each hold one .* e\.g\. --data .*test"):
        ImageFolder(tmp_path)
    assert ImageFolder(tmp_path / "train", captions_required=True).paths  # a split is a folder like any other
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "train/a.png", "text": "a cat"}\n')
    assert len(ImageFolder(tmp_path).paths) == 2  # a root metadata file: the user's own layout, read as it is


def test_an_image_on_several_metadata_lines_keeps_every_caption(tmp_path):
    """COCO's layout, one line per caption: the last line's caption was kept and the others dropped unsaid."""
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    lines = [{"file_name": "a.png", "text": t} for t in ("a cup", "coffee seen from above", "a cup")]
    lines.append({"file_name": "./a.png", "text": ["a mug", "a cup"]})
    (tmp_path / "metadata.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert ImageFolder(tmp_path, captions_required=True).captions == [("a cup", "coffee seen from above", "a mug")]
    (tmp_path / "metadata.jsonl").unlink()
    (tmp_path / "metadata.csv").write_text("file_name,text\na.png,a cup\na.png,a mug\n")
    assert ImageFolder(tmp_path, captions_required=True).captions == [("a cup", "a mug")]
