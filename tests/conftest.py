"""Shared fixtures: tiny, seeded models on the CPU, saved to temporary folders in the diffusers layout."""

from __future__ import annotations

import pytest
import torch

from mmgen.data.shapes import shapes_sample
from mmgen.models.vqvae import VQVAE, VQVAE_PRESETS


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # tiny models: threads cost more than they save


@pytest.fixture
def tiny_vq() -> VQVAE:
    return VQVAE(**VQVAE_PRESETS["tiny"]).eval()


@pytest.fixture
def tiny_model_dir(tmp_path_factory) -> str:
    """A model folder holding a tiny tokenizer whose codebook was initialised on shapes-v1 data."""
    torch.manual_seed(0)
    vq = VQVAE(**VQVAE_PRESETS["tiny"])
    from mmgen.data.images import pil_to_tensor

    x = torch.stack([pil_to_tensor(shapes_sample(0, i).image) for i in range(8)])
    vq.train()
    vq(x)  # first training forward: k-means initialisation of the codebook from data
    root = tmp_path_factory.mktemp("model")
    vq.eval().save_pretrained(root / "vqvae")
    return str(root)
