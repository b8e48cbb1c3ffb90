"""Noto Color Emoji as a captioned image folder: real images, not drawn by this project, for the own-data path.

`mmgen data emoji --out DIR` writes an ordinary imagefolder (PNGs plus `metadata.jsonl`) that the trainers read
through `--data DIR` like any user's folder. The images come from Debian's `fonts-noto-color-emoji` (the font
OFL-1.1, its artwork Apache-2.0; `make emoji-data` installs it), the names from Unicode's CLDR short names and
aliases (the `emoji` package).

- **Which emoji**: fully-qualified emoji of one code point (plus an optional variation selector), skin-tone and
  hair components left out: about 1,380 on Debian 12's font.
- **Captions**: several per emoji, a list in `metadata.jsonl`'s `text` (`ImageFolder` picks one per item): the
  short name ("cat face"), each alias ("cat"), and "a {name} emoji", "an emoji of a {name}".
- **Held out**: every 10th emoji in code-point order (`HELD_OUT_EVERY`) is left out of the training folder and
  written by `--split held-out`, with captions worded unlike any training caption ("a picture of a cat face",
  "{name} icon") for evaluation. `--split reworded` writes the training emoji with such captions: prompts for
  emoji the model saw, worded as no training caption was (`mmgen eval-retrieval`).
- **Drawing**: the font's one bitmap size (109 px), cropped to the glyph, scaled to 80 % of the side (bicubic)
  and composited on a white square.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .images import new_dataset_folder

FONT_PATHS = (
    "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",  # Debian, Ubuntu
    "/usr/share/fonts/noto/NotoColorEmoji.ttf",  # Arch
    "/usr/share/fonts/google-noto-color-emoji-fonts/NotoColorEmoji.ttf",  # Fedora
)
FONT_SIZE = 109  # the bitmap font's one size
HELD_OUT_EVERY = 10
GLYPH_SHARE = 0.8  # the glyph's longer side, as a share of the image's
BACKGROUND = (255, 255, 255)
SKIP_WORDS = ("skin tone", "hair", "regional indicator")  # components, not pictures
SPLITS = ("train", "held-out", "reworded")  # reworded: the training emoji with evaluation captions


@dataclass(frozen=True)
class Emoji:
    char: str
    name: str  # CLDR short name, e.g. "cat face"
    aliases: tuple[str, ...]  # e.g. ("cat",)

    @property
    def file_name(self) -> str:
        return "-".join(f"{ord(c):x}" for c in self.char if c != "\ufe0f") + ".png"

    def captions(self) -> list[str]:
        """Training captions: the name, each alias, two templates."""
        article = "an" if self.name[0] in "aeiou" else "a"
        templates = [f"{article} {self.name} emoji", f"an emoji of {article} {self.name}"]
        return list(dict.fromkeys([self.name, *self.aliases, *templates]))

    def reworded(self) -> list[str]:
        """Evaluation captions, worded unlike any training caption."""
        article = "an" if self.name[0] in "aeiou" else "a"
        return [f"a picture of {article} {self.name}", f"{self.name} icon"]


def find_font() -> Path:
    for path in FONT_PATHS:
        if Path(path).is_file():
            return Path(path)
    raise FileNotFoundError(
        "Noto Color Emoji is not installed: install Debian's fonts-noto-color-emoji (`make emoji-data` does)"
    )


def _clean(name: str) -> str:
    return name.strip(":").replace("_", " ").strip().lower()


def list_emoji(font: ImageFont.FreeTypeFont | None = None) -> list[Emoji]:
    """Every fully-qualified single-code-point emoji the font draws, in code-point order."""
    import emoji as emoji_data  # the `emoji` package: CLDR names, aliases and qualification status

    font = font or ImageFont.truetype(str(find_font()), FONT_SIZE)
    missing = _glyph(font, "\U0010fffd")  # what the font draws for a character it lacks
    found = []
    for char, data in emoji_data.EMOJI_DATA.items():
        base = char.replace("\ufe0f", "")
        if len(base) != 1 or data.get("status") != emoji_data.STATUS["fully_qualified"]:
            continue
        name = _clean(data["en"])
        if any(w in name for w in SKIP_WORDS):
            continue
        glyph = _glyph(font, char)
        if glyph.getbbox() is None or glyph.tobytes() == missing.tobytes():  # newer than the font
            continue
        aliases = tuple(a for a in dict.fromkeys(_clean(a) for a in data.get("alias", [])) if a != name)
        found.append(Emoji(char, name, aliases))
    return sorted(found, key=lambda e: e.char)


def _glyph(font: ImageFont.FreeTypeFont, char: str) -> Image.Image:
    """`char` drawn in colour at the font's size, centred on a transparent square twice that size."""
    canvas = Image.new("RGBA", (2 * FONT_SIZE, 2 * FONT_SIZE), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((FONT_SIZE, FONT_SIZE), char, font=font, embedded_color=True, anchor="mm")
    return canvas


def split_of(index: int) -> str:
    return "held-out" if index % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 else "train"


def render(e: Emoji, size: int, font: ImageFont.FreeTypeFont) -> Image.Image:
    """The emoji on a white `size` x `size` square, its longer side GLYPH_SHARE of the image's."""
    canvas = _glyph(font, e.char)
    glyph = canvas.crop(canvas.getbbox())
    scale = GLYPH_SHARE * size / max(glyph.size)
    glyph = glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))), Image.BICUBIC)
    out = Image.new("RGBA", (size, size), (*BACKGROUND, 255))
    out.alpha_composite(glyph, ((size - glyph.width) // 2, (size - glyph.height) // 2))
    return out.convert("RGB")


def write_emoji(out: str | Path, size: int = 64, split: str = "train") -> int:
    """Write `split`'s emoji as PNGs plus metadata.jsonl (a list of captions per image); returns how many."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not 16 <= size <= 512:
        raise ValueError(f"size must be between 16 and 512 pixels, got {size}")
    font = ImageFont.truetype(str(find_font()), FONT_SIZE)
    chosen = [e for i, e in enumerate(list_emoji(font)) if split_of(i) == ("train" if split == "reworded" else split)]
    out = new_dataset_folder(out, re.compile(r"[0-9a-f]+(-[0-9a-f]+)*\.png"), {"char", "name"})
    with open(out / "metadata.jsonl", "w") as f:
        for e in chosen:
            render(e, size, font).save(out / e.file_name)
            texts = e.captions() if split == "train" else e.reworded()
            f.write(json.dumps({"file_name": e.file_name, "text": texts, "char": e.char, "name": e.name}) + "\n")
    return len(chosen)
