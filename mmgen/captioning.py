"""Image -> text with the generator itself: captions ranked by how well the DiT denoises the image under each.

A text-to-image diffusion model is also a classifier (Li et al., 2023, "Your Diffusion Model is Secretly a
Zero-Shot Classifier", https://arxiv.org/abs/2303.16203): its training loss, the denoising error of an image x0
noised to a timestep t and predicted back under a caption c, is a Monte-Carlo estimate of -log p(x0 | c) up to a
weighting (the diffusion ELBO). So the caption under which the DiT denoises an image best is the one it finds most
likely. `caption_errors` computes that error for many captions at once: the image goes through the tokenizer
(latents = codes x `scaling_factor`, the generator's own space), is noised at RANK_TIMESTEPS with RANK_NOISES
fixed, seeded noises, and every caption is scored on the same noised latents (paired: the noises' own difficulty
cancels out of every comparison). `mmgen/candidates.py` scores starting noises by the same error.

`caption` builds a caption rather than choosing one: for a shapes-v1 model, a search over the caption grammar
(`SceneCaption`: background, each object's colour, shape, size, and its position or the relation of two
objects), attribute by attribute; for another model, a ranking of the captions it was trained on (its vocabulary).
How many timesteps and noises, and which search, were measured on tuning scenes: docs/captioning.md.

Dimension letters: N captions, S (timestep, noise) samples, C latent channels, h x w latent grid.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch

from .data.shapes import BACKGROUNDS, COLORS, POSITION_WORDINGS, POSITIONS, SHAPES, SIZES
from .images import pil_to_tensor, to_rgb
from .settings import check_prompt

RANK_TIMESTEPS = tuple(range(50, 1000, 100))  # training timesteps the image is noised to (docs/captioning.md)
RANK_NOISES = 2  # noises per timestep: S = 20 denoising errors per caption
RANK_SEED = 0  # the noises are fixed: an image and its captions always get the same scores
BATCH_ROWS = 256  # DiT rows per forward pass (captions x samples), to bound memory
RELATIONS = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}
# Under this share of the empty prompt's error taken away (`explained`), the best caption is said to be a guess. On
# mmgen-base a white or black canvas, noise and photos read -0.06 to -0.01 (a gray canvas 0.09: not caught), and 1
# of 64 tuning scenes with its own caption is under it (docs/captioning.md).
NAMES_NOTHING = 0.05
MAX_RANKED = 256  # `caption` without a grammar ranks the vocabulary's most common captions, at most this many


# ---------------------------------------------------------------- scoring
def check_image(pipe, image) -> PIL.Image.Image:
    """The image as RGB PIL, or ValueError: not an image, or not the size the generator paints."""
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] in (3, 4) and image.dtype == np.uint8:
        image = PIL.Image.fromarray(image)
    if not isinstance(image, PIL.Image.Image):
        raise ValueError(f"expected a PIL image or an (H, W, 3) uint8 array, got {type(image).__name__}")
    side = pipe.image_size
    if image.size != (side, side):
        raise ValueError(
            f"this model reads {side}x{side} images (the size it paints); got {image.width}x{image.height}"
        )
    return to_rgb(image)


@torch.no_grad()
def image_latents(pipe, image) -> torch.Tensor:
    """An image -> its latents in the generator's space (1, C, h, w): the tokenizer's codes x scaling_factor."""
    x = pil_to_tensor(check_image(pipe, image))[None].to(pipe.vqvae.device, pipe.vqvae.dtype)  # (1, 3, H, W)
    return pipe.vqvae.encode(x).latents.to(pipe.transformer.dtype) * pipe.scaling_factor


def noised_samples(pipe, x0: torch.Tensor, timesteps=RANK_TIMESTEPS, num_noises: int = RANK_NOISES, seed=RANK_SEED):
    """x0 (1, C, h, w) noised at every (timestep, noise) pair: (x_t (S, C, h, w), t (S,), target (S, C, h, w)),
    the target being what the model is trained to predict there (epsilon or v). S = len(timesteps) x num_noises."""
    from .denoising import training_noised  # imports diffusers, which the app's page is served without

    generator = torch.Generator().manual_seed(seed)
    eps = torch.randn((num_noises, *x0.shape[1:]), generator=generator).to(x0)  # (noises, C, h, w)
    t = torch.tensor(timesteps, device=x0.device).repeat_interleave(num_noises)  # (S,)
    eps = eps.repeat(len(timesteps), 1, 1, 1)  # (S, C, h, w): noise k at every timestep
    x_t, target = training_noised(pipe.scheduler, x0.expand_as(eps), eps, t)
    return x_t, t, target


def inline(fn, *args):
    """The default `turn`: run the model work here, now."""
    return fn(*args)


@torch.no_grad()
def sample_errors(pipe, x0: torch.Tensor, captions: list[str], turn=inline, **noise) -> torch.Tensor:
    """(N, S) the DiT's denoising error (mean squared, per sample) of latents x0 (1, C, h, w) under each caption,
    at every (timestep, noise) sample of `noised_samples` (keyword arguments go there). Each piece of model work
    (the captions' text states, each batch of the DiT) runs as `turn(fn, *args)`: an app runs it on its model
    thread after checking the job's time limit, so other visitors' jobs take turns with this one, batch by batch."""
    x_t, t, target = noised_samples(pipe, x0, **noise)
    device, S = x0.device, x_t.shape[0]
    context = turn(_text_context, pipe, captions, device)  # (N, ...) computed once per caption
    rows = torch.arange(len(captions), device=device).repeat_interleave(S)  # (N * S,) caption-major
    errors = []
    for start in range(0, len(rows), BATCH_ROWS):
        r = rows[start : start + BATCH_ROWS]
        s = torch.arange(start, start + len(r), device=device) % S  # each row's sample
        errors.append(turn(_batch_errors, pipe, x_t[s], t[s], context, r, target[s]))
    return torch.cat(errors).view(len(captions), S)


@torch.no_grad()
def _text_context(pipe, captions: list[str], device):
    embeds, mask, _, _ = pipe.encode_prompt(captions, device, do_classifier_free_guidance=False)
    with pipe.autocast(device):
        return pipe.transformer.prepare_text(embeds, mask)


@torch.no_grad()
def _batch_errors(pipe, x_t: torch.Tensor, t: torch.Tensor, context, rows: torch.Tensor, target: torch.Tensor):
    """(B,) mean squared errors of the DiT's predictions for x_t (B, C, h, w) at t (B,) under `context`'s `rows`."""
    with pipe.autocast(x_t.device):
        pred = pipe.transformer(x_t, t, text_context=context.rows(rows)).sample
    return ((pred.float() - target.float()) ** 2).mean(dim=(1, 2, 3))


def check_captions(captions) -> list[str]:
    if isinstance(captions, str) or not isinstance(captions, list | tuple) or not captions:
        raise ValueError("`captions` must be a non-empty list of strings")
    return [check_prompt(c) for c in captions]


def caption_errors(pipe, image, captions: list[str], turn=inline, **noise) -> torch.Tensor:
    """(N,) the mean denoising error of `image` (a PIL image the generator's size) under each caption: lower means
    the model finds the caption more likely (`turn`: see `sample_errors`)."""
    x0 = turn(image_latents, pipe, image)
    return sample_errors(pipe, x0, check_captions(captions), turn=turn, **noise).mean(dim=1)


def explained(pipe, image, caption: str, turn=inline) -> float:
    """The share of `image`'s denoising error under no caption (the empty prompt, the null condition) that
    `caption` takes away, on the ranking's fixed samples: 1 - error(caption) / error(""). A caption the model
    reads in the image takes some away (mmgen-base, 64 tuning scenes with their own captions: 0.28 on average, 3
    under 0.1); near 0 or below, the model finds it no more likely than no caption at all, as for a blank canvas
    or a photo (-0.06 to 0.09 for the grammar search's best caption; docs/captioning.md)."""
    x0 = turn(image_latents, pipe, image)
    errors = sample_errors(pipe, x0, ["", check_prompt(caption)], turn=turn).mean(dim=1)
    return float(1 - errors[1] / errors[0])


def rank_captions(pipe, image, captions: list[str], turn=inline, **noise) -> list[tuple[str, float]]:
    """[(caption, error)] best first: the captions ranked by `caption_errors`."""
    captions = check_captions(captions)
    errors = caption_errors(pipe, image, captions, turn, **noise).tolist()
    return sorted(zip(captions, errors), key=lambda pair: pair[1])


# ---------------------------------------------------------------- the shapes-v1 caption grammar
@dataclass(frozen=True)
class ObjectCaption:
    color: str
    shape: str
    size: str | None = None  # None: left out of the caption
    position: str | None = None  # a shapes-v1 cell name; single-object captions only


@dataclass(frozen=True)
class SceneCaption:
    """A caption in shapes-v1's canonical wording: one object with its place, or two related by `relation`."""

    objects: tuple[ObjectCaption, ...]
    background: str | None = None
    relation: str | None = None  # "left of", "right of", "above", "below": of the first object to the second

    @property
    def text(self) -> str:
        def phrase(o: ObjectCaption) -> str:
            return "a " + " ".join(w for w in (o.size, o.color, o.shape) if w)

        first = self.objects[0]
        text = phrase(first)
        if len(self.objects) == 2:
            text += f" {RELATIONS[self.relation]} {phrase(self.objects[1])}"
        elif first.position:
            text += " " + POSITION_WORDINGS[first.position][0]
        return text + (f" on a {self.background} background" if self.background else "")

    @classmethod
    def from_labels(cls, labels: dict) -> SceneCaption:
        """The full caption of shapes-v1 labels (or a prompt item): every attribute named, the first true relation."""
        from .data.shapes import relation

        objects = labels["objects"]
        keep = ("color", "shape", "size") + (("position",) if len(objects) == 1 else ())
        rel = labels.get("relation") or (relation(*objects)[0] if len(objects) == 2 else None)
        return cls(tuple(ObjectCaption(**{k: o[k] for k in keep}) for o in objects), labels["background"], rel)

    def with_object(self, index: int, **changes) -> SceneCaption:
        objects = list(self.objects)
        objects[index] = dataclasses.replace(objects[index], **changes)
        return dataclasses.replace(self, objects=tuple(objects))


# ---------------------------------------------------------------- caption search
@dataclass(frozen=True)
class SearchSettings:
    """How `caption` searches the shapes-v1 grammar (chosen on tuning scenes: docs/captioning.md)."""

    object_timesteps: tuple[int, ...] = (150, 350, 550, 750, 950)  # ranking the 48 "a {colour} {shape}" captions
    timesteps: tuple[int, ...] = RANK_TIMESTEPS  # every later choice
    noises: int = 1  # per timestep, in every stage
    refine: bool = True  # after the greedy pass, choose each object's attributes again, all else named


class _Scorer:
    """Scores captions of one image on fixed samples, remembering every score (the search repeats captions)."""

    def __init__(self, pipe, x0: torch.Tensor, timesteps: tuple[int, ...], num_noises: int, turn=inline):
        self.pipe, self.x0, self.noise = pipe, x0, {"timesteps": timesteps, "num_noises": num_noises, "turn": turn}
        self.scores: dict[str, float] = {}

    def ranked(self, options: list[SceneCaption]) -> list[SceneCaption]:
        new = list(dict.fromkeys(o.text for o in options if o.text not in self.scores))
        if new:
            self.scores.update(zip(new, sample_errors(self.pipe, self.x0, new, **self.noise).mean(1).tolist()))
        return sorted(options, key=lambda o: self.scores[o.text])


def _choices(scene: SceneCaption, attribute: str, index: int) -> list[SceneCaption]:
    """`scene` with one attribute set to each of its values (colours another object holds left out)."""
    if attribute == "background":
        return [dataclasses.replace(scene, background=b) for b in BACKGROUNDS]
    if attribute == "relation":
        return [dataclasses.replace(scene, relation=r) for r in RELATIONS]
    values = {"color": COLORS, "shape": SHAPES, "size": SIZES, "position": POSITIONS}[attribute]
    taken = {o.color for i, o in enumerate(scene.objects) if i != index} if attribute == "color" else set()
    return [scene.with_object(index, **{attribute: v}) for v in values if v not in taken]


def _greedy(scorer: _Scorer, scene: SceneCaption, attributes: list[tuple[str, int]]) -> SceneCaption:
    for attribute, index in attributes:
        scene = scorer.ranked(_choices(scene, attribute, index))[0]
    return scene


def search_stages(pipe, image, settings: SearchSettings = SearchSettings(), turn=inline) -> dict[str, list]:
    """The shapes-v1 caption search, stage by stage: {"greedy": [(caption, error)] of the best one-object and
    two-object captions after the greedy pass, best first; "refined": the same after the second pass (with
    `settings.refine`); "captions_scored": how many captions were scored}. The 48 "a {colour} {shape}" captions are
    ranked first; the best is the one-object hypothesis and, with the best of another colour, the two-object one.
    Each hypothesis then gets its background, sizes and position (one object) or relation (two), greedily, one
    attribute at a time; the refining pass chooses each object's colour, shape and size (and the relation) again,
    everything else named. The lower error decides how many objects. `turn`: see `sample_errors`."""
    x0 = turn(image_latents, pipe, image)
    cheap = _Scorer(pipe, x0, settings.object_timesteps, settings.noises, turn)
    objects = cheap.ranked([SceneCaption((ObjectCaption(c, s),)) for c in COLORS for s in SHAPES])
    first = objects[0].objects[0]
    second = next(o.objects[0] for o in objects if o.objects[0].color != first.color)
    scorer = _Scorer(pipe, x0, settings.timesteps, settings.noises, turn)
    one = _greedy(scorer, objects[0], [("background", 0), ("size", 0), ("position", 0)])
    two = SceneCaption((first, second), relation="left of")
    two = _greedy(scorer, two, [("relation", 0), ("background", 0), ("size", 0), ("size", 1)])

    def ranked(*scenes: SceneCaption) -> list[tuple[SceneCaption, float]]:
        return sorted(((s, scorer.scores[s.text]) for s in scenes), key=lambda pair: pair[1])

    stages = {"greedy": ranked(one, two)}
    if settings.refine:
        one = _greedy(scorer, one, [(a, 0) for a in ("color", "shape", "size")])
        two = _greedy(scorer, two, [(a, i) for i in (0, 1) for a in ("color", "shape", "size")] + [("relation", 0)])
        stages["refined"] = ranked(one, two)
    return stages | {"captions_scored": len(cheap.scores) + len(scorer.scores)}


def search_shapes_caption(
    pipe, image, settings: SearchSettings = SearchSettings(), turn=inline
) -> list[tuple[SceneCaption, float]]:
    """[(caption, error)] of the search's best one-object and two-object captions, best first (`search_stages`)."""
    stages = search_stages(pipe, image, settings, turn)
    return stages["refined" if settings.refine else "greedy"]


def caption_candidates(pipe, image, vocabulary=None, settings: SearchSettings = SearchSettings(), turn=inline):
    """[(caption, error)] best first: for a model trained on shapes-v1 (its vocabulary names the grammar), the
    grammar search's best one-object and two-object captions; for another model, its MAX_RANKED most common
    training captions, ranked. `vocabulary`: a `mmgen.vocabulary.Vocabulary`, by default the model's own; `turn`:
    see `sample_errors`."""
    from .vocabulary import SHAPES_V1, Vocabulary

    image = check_image(pipe, image)
    vocabulary = vocabulary or Vocabulary.for_pipeline(pipe)
    if vocabulary is None:
        raise ValueError(
            "this model was published without a vocabulary (transformer/vocabulary.json), so it has no captions "
            "to choose from: rank captions of your own (`rank_captions`; in the app, 'Rank these captions')"
        )
    if vocabulary.grammar == SHAPES_V1:
        return [(scene.text, error) for scene, error in search_shapes_caption(pipe, image, settings, turn)]
    if not vocabulary.captions:
        raise ValueError("the model's vocabulary holds no captions to rank")
    return rank_captions(pipe, image, vocabulary.captions[:MAX_RANKED], turn)


def caption(pipe, image, vocabulary=None, settings: SearchSettings = SearchSettings()) -> str:
    """The best caption the model can give `image` (see `caption_candidates`)."""
    return caption_candidates(pipe, image, vocabulary, settings)[0][0]
