"""`mmgen data emoji`: Noto Color Emoji (Debian's font, installed by `make test`) as a captioned image folder."""

import json

import numpy as np
import pytest
from PIL import ImageFont

from mmgen.data import emoji as emoji_data
from mmgen.data.emoji import FONT_SIZE, find_font, list_emoji, render, split_of, write_emoji
from mmgen.data.images import ImageFolder


@pytest.fixture(scope="module")
def font():
    return ImageFont.truetype(str(find_font()), FONT_SIZE)


@pytest.fixture(scope="module")
def every_emoji(font):
    return list_emoji(font)


def test_the_list_holds_pictures_with_names_and_a_tenth_held_out(every_emoji):
    assert 1000 < len(every_emoji) < 2000
    chars = [e.char for e in every_emoji]
    assert chars == sorted(chars) and len(set(chars)) == len(chars)
    names = {e.name for e in every_emoji}
    assert {"cat face", "red apple", "rocket"} <= names
    assert not any("skin tone" in n or n.startswith("regional indicator") for n in names)
    held = [e for i, e in enumerate(every_emoji) if split_of(i) == "held-out"]
    assert abs(len(held) / len(every_emoji) - 0.1) < 0.01
    cat = next(e for e in every_emoji if e.name == "cat face")
    assert cat.captions() == ["cat face", "cat", "a cat face emoji", "an emoji of a cat face"]


def test_reworded_captions_never_repeat_a_training_caption(every_emoji):
    training = {c for e in every_emoji for c in e.captions()}
    assert not training & {c for e in every_emoji for c in e.reworded()}


def test_render_centres_the_glyph_on_white(every_emoji, font):
    rocket = next(e for e in every_emoji if e.name == "rocket")
    a = np.asarray(render(rocket, 64, font)).astype(int)
    assert a.shape == (64, 64, 3)
    assert (a[:4] == 255).all() and (a[:, :4] == 255).all()  # the margin is the plain background
    ys, xs = np.nonzero((a < 240).any(axis=2))
    assert abs((ys.min() + ys.max()) / 2 - 31.5) <= 3 and abs((xs.min() + xs.max()) / 2 - 31.5) <= 3
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 >= 0.7 * 64
    assert len({tuple(p) for p in a.reshape(-1, 3)}) > 50  # colour, not a blank or .notdef box


def test_the_folder_trains_through_the_ordinary_path(tmp_path, every_emoji, monkeypatch):
    monkeypatch.setattr(emoji_data, "list_emoji", lambda font: every_emoji[:30])
    assert write_emoji(tmp_path / "train", size=64) == 27
    assert write_emoji(tmp_path / "held", size=64, split="held-out") == 3
    records = [json.loads(line) for line in (tmp_path / "train" / "metadata.jsonl").read_text().splitlines()]
    held = {json.loads(line)["file_name"] for line in (tmp_path / "held" / "metadata.jsonl").read_text().splitlines()}
    assert not held & {r["file_name"] for r in records}
    folder = ImageFolder(tmp_path / "train", length=200, size=64, captions_required=True)
    assert len(folder.paths) == 27 and not folder.skipped
    texts = {folder[i]["text"] for i in range(200)}
    all_captions = {c for r in records for c in r["text"]}
    assert texts <= all_captions and len(texts) > 60  # each item draws one of its emoji's captions


def test_a_missing_font_is_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setattr(emoji_data, "FONT_PATHS", (str(tmp_path / "none.ttf"),))
    with pytest.raises(FileNotFoundError, match="fonts-noto-color-emoji"):
        write_emoji(tmp_path / "out")
    with pytest.raises(ValueError, match="split must be"):
        write_emoji(tmp_path / "out", split="test")


def test_the_reworded_split_is_the_training_emoji_with_evaluation_captions(tmp_path, every_emoji, monkeypatch):
    monkeypatch.setattr(emoji_data, "list_emoji", lambda font: every_emoji[:20])
    write_emoji(tmp_path / "train", size=64)
    assert write_emoji(tmp_path / "reworded", size=64, split="reworded") == 18
    train, reworded = (
        [json.loads(line) for line in (tmp_path / split / "metadata.jsonl").read_text().splitlines()]
        for split in ("train", "reworded")
    )
    assert [r["file_name"] for r in train] == [r["file_name"] for r in reworded]
    assert all(not set(a["text"]) & set(b["text"]) for a, b in zip(train, reworded))


def test_the_emoji_recipe_is_a_valid_recipe():
    from mmgen.training import train_generator, train_tokenizer
    from mmgen.training.recipe import load_recipe, recipe_stages

    recipe = load_recipe("recipes/mmgen-emoji.toml")
    (tokenizer,) = recipe_stages(recipe, "tokenizer", train_tokenizer.add_arguments)
    (generator,) = recipe_stages(recipe, "generator", train_generator.add_arguments)
    assert tokenizer.args.data == generator.args.data == "data/emoji"  # the ordinary folder path, no special case
    assert generator.args.vqvae == recipe.model == "assets/mmgen-emoji"
