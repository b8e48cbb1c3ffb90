"""The retrieval evaluation (`mmgen eval-retrieval`): its feature spaces find right images and refuse wrong ones,
its halves never overlap, and the command runs end to end on a tiny pipeline."""

import json

import numpy as np
import pytest
from PIL import Image, ImageFilter, ImageOps

from mmgen.cli import main
from mmgen.data.shapes import shapes_sample
from mmgen.eval.eval_retrieval import load_gallery, load_queries
from mmgen.eval.retrieval import FEATURES, Gallery, top_k

N = 40


@pytest.fixture(scope="module")
def scenes():
    return [shapes_sample(5, i).image for i in range(N)]


@pytest.mark.parametrize("space", list(FEATURES))
def test_right_images_are_found_and_mirrors_count(scenes, space):
    gallery = Gallery.of(scenes, space)
    targets = np.arange(N)
    assert top_k(gallery.ranks(scenes, targets), 1) == 1.0
    assert top_k(np.array([0, 3, 7]), 1) == 1 / 3 and top_k(np.array([0, 3, 7]), 5) == 2 / 3  # ranks from 0
    assert top_k(gallery.ranks([ImageOps.mirror(s) for s in scenes], targets), 1) == 1.0


@pytest.mark.parametrize("space", list(FEATURES))
def test_wrong_images_are_not(scenes, space):
    """Another scene, a blank canvas, the same scene in other colours: a person would not call them the target."""
    gallery = Gallery.of(scenes, space)
    targets = np.arange(N)
    assert top_k(gallery.ranks(scenes[1:] + scenes[:1], targets), 1) == 0.0
    blank = [Image.new("RGB", (64, 64), s.getpixel((0, 0))) for s in scenes]
    assert top_k(gallery.ranks(blank, targets), 1) <= 0.1


def test_a_blurred_right_image_is_found_and_a_blurred_wrong_colour_is_not(scenes):
    """A gallery that also holds every scene in other colours (RGB -> BGR): a blurred copy (as a tokenizer or a
    generator draws it) must find its own scene, a blurred copy in the other colours must not."""
    swapped = [Image.fromarray(np.asarray(s)[..., ::-1].copy()) for s in scenes]
    blur = ImageFilter.GaussianBlur(1)
    for space in FEATURES:
        gallery = Gallery.of(scenes + swapped, space)
        assert top_k(gallery.ranks([s.filter(blur) for s in scenes], np.arange(N)), 1) >= 0.9, space
        assert top_k(gallery.ranks([s.filter(blur) for s in swapped], np.arange(N)), 1) <= 0.1, space


def _folder(path, images, captions):
    path.mkdir()
    with open(path / "metadata.jsonl", "w") as f:
        for i, (im, caps) in enumerate(zip(images, captions)):
            im.save(path / f"{i}.png")
            f.write(json.dumps({"file_name": f"{i}.png", "text": caps}) + "\n")
    return str(path)


def test_tuning_and_test_halves_never_share_an_image(tmp_path, scenes):
    folder = _folder(tmp_path / "q", scenes[:10], [[f"scene {i}", f"picture {i}"] for i in range(10)])
    gallery = load_gallery([folder])
    tuning, test = (load_queries(folder, gallery, half, 100, 0) for half in ("tuning", "test"))
    assert len(tuning.targets) == len(test.targets) == 5 and not set(tuning.targets) & set(test.targets)
    assert all(c.split()[-1] == gallery.names[t][:-4] for c, t in zip(test.captions, test.targets))  # its own
    other = _folder(tmp_path / "other", [scenes[0]], [["x"]])
    with pytest.raises(ValueError, match="in no gallery folder"):
        load_queries(folder, load_gallery([other]), "test", 5, 0)
    with pytest.raises(ValueError, match="no captioned odd-numbered .test. images to query with"):  # one image
        load_queries(other, load_gallery([other]), "test", 5, 0)


def test_folders_that_number_their_images_alike_keep_every_image(tmp_path, scenes):
    """A training and a held-out folder both holding 0.png .. 3.png: the gallery kept the first folder's alone, and
    held-out queries were scored against training images. Same names are one image only when the pixels are."""
    train = _folder(tmp_path / "train", scenes[:4], [[f"train {i}"] for i in range(4)])
    held = _folder(tmp_path / "held-out", scenes[4:8], [[f"held {i}"] for i in range(4)])
    again = _folder(tmp_path / "reworded", scenes[:4], [[f"said otherwise {i}"] for i in range(4)])
    gallery = load_gallery([train, held])
    assert len(gallery.images) == 8 and gallery.names[4:6] == ["held-out/0.png", "held-out/1.png"]
    queries = load_queries(held, gallery, "test", 10, 0)
    assert [gallery.names[t] for t in queries.targets] == ["held-out/1.png", "held-out/3.png"]
    queries = load_queries(again, gallery, "test", 10, 0)  # the training images, captioned otherwise
    assert [gallery.names[t] for t in queries.targets] == ["1.png", "3.png"]
    assert len(load_gallery([train, again]).images) == 4  # the same pixels under one name: one image
    # read as training reads them: transparency on white (it was black), a file that cannot be read left out
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(tmp_path / "train" / "clear.png")
    (tmp_path / "train" / "broken.png").write_bytes(b"not a png")
    lines = (tmp_path / "train" / "metadata.jsonl").read_text()
    extra = [{"file_name": f, "text": "x"} for f in ("clear.png", "broken.png")]
    (tmp_path / "train" / "metadata.jsonl").write_text(lines + "".join(json.dumps(e) + "\n" for e in extra))
    gallery = load_gallery([train])
    assert gallery.names[-1] == "clear.png" and gallery.images[-1].getpixel((0, 0)) == (255, 255, 255)
    # a wide image is compared by its centre square, as the generator (trained on square crops) draws it
    wide = Image.new("RGB", (96, 32), "red")
    wide.paste(Image.new("RGB", (32, 32), "blue"), (32, 0))
    wide.save(tmp_path / "train" / "wide.png")
    (tmp_path / "train" / "metadata.jsonl").write_text(
        lines + json.dumps({"file_name": "wide.png", "text": "w"}) + "\n"
    )
    gallery = load_gallery([train])
    assert gallery.images[-1].size == (32, 32) and gallery.images[-1].getpixel((16, 16)) == (0, 0, 255)


def test_the_command_runs_end_to_end(tmp_path, tiny_pipe, scenes, capsys):
    tiny_pipe.save_pretrained(tmp_path / "pipe")
    folder = _folder(tmp_path / "data", scenes[:12], [[shapes_sample(5, i).caption] for i in range(12)])
    out = tmp_path / "eval.json"
    argv = ["eval-retrieval", "--model", str(tmp_path / "pipe"), "--gallery", folder, "--queries", folder]
    assert main(argv + ["--n", "4", "--variety-prompts", "2", "--variety-seeds", "2", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["data"]["n"] == 4 and set(results["data"]) >= {"pixels", "gradients"}
    assert results["checks"]["own_images"]["pixels"]["top1"] == 1.0  # the evaluator finds right answers
    assert results["variety"]["seeds"] == 2 and 0 <= results["variety"]["spread"]
    assert out.with_suffix(".png").is_file()
    assert results["args"]["gallery"] == [folder] and results["args"]["n"] == 4  # enough to run it again
    said = capsys.readouterr().out
    assert "chance among 12 gallery images: top-1 8.3%, top-5 41.7% (a gallery this small says little)" in said
    assert "the targets' own images top-1 100% (must be 100%)" in said
    # --out x.png: the picture, written beside it as x.png, was overwritten by the JSON
    assert main(argv + ["--out", str(tmp_path / "eval.png")]) == 2
    assert "eval.png: the name must end in .json" in capsys.readouterr().err  # (the CLI's check of every eval-*)


def test_a_copy_in_the_gallery_fails_the_evaluators_check_and_names_it(tmp_path, scenes):
    """Two identical photos in a gallery (skimage's cat() and chelsea()) took the targets' own images to 50 % top-1
    with no word of why: the check names them, and the card marks the check failed."""
    from mmgen.eval.eval_retrieval import lost_targets
    from mmgen.model_card_own import retrieval_rows

    folder = _folder(tmp_path / "data", [*scenes[:5], scenes[2]], [[f"scene {i}"] for i in range(6)])  # 5.png = 2.png
    gallery = load_gallery([folder])
    pixels = Gallery.of(gallery.images, "pixels")
    assert lost_targets(pixels, gallery, np.arange(6)) == [["2.png", "5.png"], ["5.png", "2.png"]]
    assert lost_targets(pixels, gallery, np.array([0, 1, 3])) == []  # the others are their own nearest
    chance = {"top1": 0.1, "top5": 0.5}
    found = {"n": 4, "pixels": {"top1": 0.25, "top5": 0.5}}
    for top1, rows in ((1.0, 1), (0.5, 2)):
        checks = {"own_images": {"pixels": {"top1": top1}}}
        ev = {"half": "test", "gallery": 6, "chance": chance, "data": found, "checks": checks}
        (tmp_path / "eval_retrieval.json").write_text(json.dumps(ev))
        assert len(retrieval_rows(tmp_path)) == rows
    assert (
        "the evaluator's check: the targets' own images | top-1 (pixels) | 50% | 100 % | **no**"
        in retrieval_rows(tmp_path)[0]
    )


def test_the_test_half_samples_at_the_models_own_settings_unless_told(tiny_pipe):
    import argparse

    from mmgen.eval.eval_retrieval import sampling_of
    from mmgen.pipeline import MMGenPipeline

    own = MMGenPipeline(**tiny_pipe.components, sampling_defaults={"num_inference_steps": 30, "guidance_scale": 7})
    s = sampling_of(own, argparse.Namespace(steps=None), guidance=None)
    assert (s.num_inference_steps, s.guidance_scale) == (30, 7.0)
    s = sampling_of(own, argparse.Namespace(steps=12), guidance=2.0)  # --steps and --guidance win
    assert (s.num_inference_steps, s.guidance_scale, s.codebook_snap) == (
        12,
        2.0,
        own.sampling_defaults["codebook_snap"],
    )


def test_a_folder_is_read_as_training_reads_it(tmp_path, scenes):
    """Its own reader refused a BOM, a line that is not JSON or not an object (a traceback) and metadata.csv,
    all of which a folder that trained may hold."""
    from mmgen.eval.eval_retrieval import read_folder

    folder = tmp_path / "mine"
    folder.mkdir()
    for i in range(3):
        scenes[i].save(folder / f"{i}.png")
    lines = ['{"file_name": "2.png", "text": "c"}', "not json", '["1.png", "x"]']
    lines.append('{"file_name": "0.png", "text": "a"}')
    (folder / "metadata.jsonl").write_text("\ufeff" + "\n".join(lines), encoding="utf-8")
    assert [(name, texts) for name, texts, _ in read_folder(folder)] == [("2.png", ["c"]), ("0.png", ["a"])]
    (folder / "metadata.jsonl").unlink()
    (folder / "metadata.csv").write_text("file_name,text\n1.png,b\n0.png,a\n")
    assert [name for name, _, _ in read_folder(folder)] == ["1.png", "0.png"]  # the metadata's order
