"""The About tab: how mmgen makes an image, in a page, with the papers it follows, and the model card."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

ABOUT = """
## How mmgen makes an image

**Stage 1: a tokenizer (VQ-VAE or VQ-GAN).** An encoder turns every patch of pixels (4×4 for an f4 tokenizer,
8×8 for an f8) into a vector, and each vector is replaced by the nearest of the learned *code vectors*, the
codebook (512 in the f4 VQ-VAE, 1,024 in the VQ-GAN f8). Either way an image becomes a 16×16 grid of code ids,
its tokens: a 64×64 image through the f4, a 128×128 one through the f8. A decoder paints the image back from
those ids alone. The VQ-GAN is the same network trained with a second loss: a small discriminator judges
patches of its reconstructions against real ones, which pushes the decoder to draw sharp edges rather than the
blurred average that a pixel loss alone prefers, so fewer tokens suffice. The Tokenizer tab compares the two on
your own images, side by side: they differ in token size, codebook and training data as well as in this loss, and
at the same pixels the f4 makes 4× the tokens (3.6× the bits: 9 bits a token to the f8's 10). The Codebook tab
shows what each code looks like. ([VQ-VAE, van den Oord et al. 2017](https://arxiv.org/abs/1711.00937);
[VQGAN, Esser et al. 2021](https://arxiv.org/abs/2012.09841);
[ViT-VQGAN's l2-normalised codes, Yu et al. 2021](https://arxiv.org/abs/2110.04627))

**Stage 2: a diffusion transformer (DiT).** Generation starts from pure noise in the tokenizer's latent space
(16×16 cells of 8 numbers). At every step a transformer, reading your prompt through a frozen text encoder
(all-MiniLM-L6-v2) and two small layers trained with it, predicts v, a blend of the noise and the clean image
(from which both follow); the sampler removes some of the noise. The Trajectory tab shows every step:
the noisy latent x_t, the model's guess of the clean image x0 and its tokens. At the end, each cell is snapped
to its nearest code, so the final image has an exact token grid.
([DDPM, Ho et al. 2020](https://arxiv.org/abs/2006.11239);
[DiT, Peebles & Xie 2023](https://arxiv.org/abs/2212.09748);
[v-prediction, Salimans & Ho 2022](https://arxiv.org/abs/2202.00512);
[classifier-free guidance, Ho & Salimans 2022](https://arxiv.org/abs/2207.12598);
[PixArt-α cross-attention, Chen et al. 2023](https://arxiv.org/abs/2310.00426))

**Guidance** runs the model twice per step, with and without the prompt, and pushes the result away from the
unconditional guess: higher values follow the prompt more closely and vary less; 1 is the prompted guess alone
(off). It guides the noisier steps only (timesteps 250 and up): unguided, the last steps keep small shapes'
colours.

**Codebook snap** moves the model's guess of the clean image part of the way to its nearest codes at every
step, not only at the end (0: off, 1: all the way), like dynamic thresholding but onto the codebook. The shipped
model's default was chosen on tuning prompts: it makes two-object prompts right more often (see the model card).

**Candidates** tries several starting noises: each runs through the first 30 % of the steps, the model scores its
own guess of the clean image by how well it can denoise it given the prompt (its likelihood), and the most likely
one is sampled from the start. Where the objects go is settled in those first steps, so this mostly removes
objects drawn twice. It costs about 2 runs' time at 4 candidates; the Trajectory tab shows the chosen run.
([Diffusion Classifier, Li et al. 2023](https://arxiv.org/abs/2303.16203))
"""


def model_card_text(path: Path) -> str:
    """The model card's Markdown without its YAML front matter (the Hub's metadata block)."""
    if not path.exists():  # a model of one's own, published without `--card`
        folder = path.parent
        return (
            f"_No model card: `{folder.name}` holds no README.md. `python -m mmgen.release --out {folder} --card` "
            "writes one from its training logs and evaluations._"
        )
    text = path.read_text()
    if text.startswith("---"):
        text = text.split("---", 2)[2]
    return text


def build_about_tab(model_card: Path) -> None:
    with gr.Tab("About", id="about"):
        gr.Markdown(ABOUT, elem_id="about")
        with gr.Accordion("Model card", open=False):
            gr.Markdown(model_card_text(model_card), elem_id="model-card")
