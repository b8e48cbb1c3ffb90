"""mmgen: a hands-on two-stage image generator (a VQ-VAE tokenizer and a text-conditioned DiT).

    from mmgen import MMGenPipeline
    pipe = MMGenPipeline.from_pretrained("assets/mmgen-base")
    out = pipe("a large red circle in the top left on a white background")

The public names below are imported lazily, on first use: `import mmgen` stays cheap (no torch, diffusers or
gradio until a name that needs them is touched), as in diffusers' own package root.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {  # public name -> the module that defines it
    "MMGenPipeline": "mmgen.pipeline",
    "MMGenPipelineOutput": "mmgen.pipeline",
    "SCHEDULERS": "mmgen.pipeline",
    "DenoisingRun": "mmgen.denoising",
    "StepOutput": "mmgen.denoising",
    "VQVAE": "mmgen.models.vqvae",
    "VQVAEOutput": "mmgen.models.vqvae",
    "DiT": "mmgen.models.dit",
    "TrajectoryRecorder": "mmgen.callbacks",
    "LatentInpainter": "mmgen.callbacks",
    "SamplingSettings": "mmgen.settings",
    "make_run_card": "mmgen.run_card",
    "read_run_card": "mmgen.run_card",
    "load_vqvae": "mmgen.tokens",
    "encode_image": "mmgen.tokens",
    "decode_tokens": "mmgen.tokens",
    "CodebookAtlas": "mmgen.codebook",
    "Tokenizer": "mmgen.tokenizers",
    "load_tokenizer": "mmgen.tokenizers",
    "compare_tokenizers": "mmgen.compare",
    "quantization_ambiguity": "mmgen.compare",
    "shapes_sample": "mmgen.data.shapes",
    "AttentionRecorder": "mmgen.attention",
    "Vocabulary": "mmgen.vocabulary",
}
__all__ = [  # literal, so tools see the public names; test_layout checks each resolves
    "MMGenPipeline",
    "MMGenPipelineOutput",
    "SCHEDULERS",
    "DenoisingRun",
    "StepOutput",
    "VQVAE",
    "VQVAEOutput",
    "DiT",
    "TrajectoryRecorder",
    "LatentInpainter",
    "SamplingSettings",
    "make_run_card",
    "read_run_card",
    "load_vqvae",
    "encode_image",
    "decode_tokens",
    "CodebookAtlas",
    "Tokenizer",
    "load_tokenizer",
    "compare_tokenizers",
    "quantization_ambiguity",
    "shapes_sample",
    "AttentionRecorder",
    "Vocabulary",
    "__version__",
]

if TYPE_CHECKING:
    from .attention import AttentionRecorder
    from .callbacks import LatentInpainter, TrajectoryRecorder
    from .codebook import CodebookAtlas
    from .compare import compare_tokenizers, quantization_ambiguity
    from .data.shapes import shapes_sample
    from .denoising import DenoisingRun, StepOutput
    from .models.dit import DiT
    from .models.vqvae import VQVAE, VQVAEOutput
    from .pipeline import SCHEDULERS, MMGenPipeline, MMGenPipelineOutput
    from .run_card import make_run_card, read_run_card
    from .settings import SamplingSettings
    from .tokenizers import Tokenizer, load_tokenizer
    from .tokens import decode_tokens, encode_image, load_vqvae
    from .vocabulary import Vocabulary


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mmgen' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
