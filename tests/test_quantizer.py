import pytest
import torch
import torch.nn.functional as F

from mmgen.models.quantizer import VectorQuantizer, spherical_kmeans


def test_indices_to_codes_inverts_quantisation_exactly():
    q = VectorQuantizer(num_codes=32, code_dim=4).eval()
    z = torch.randn(2, 4, 5, 7)
    out = q(z)
    assert out.latents.shape == (2, 4, 5, 7) and out.indices.shape == (2, 5, 7)
    assert out.indices.dtype == torch.long
    assert torch.equal(q.indices_to_codes(out.indices), out.latents)
    # quantising the codes again gives the same indices: codes are fixed points
    assert torch.equal(q(out.latents).indices, out.indices)


def test_codes_are_unit_vectors_and_nearest():
    q = VectorQuantizer(num_codes=16, code_dim=8).eval()
    z = torch.randn(1, 8, 3, 3)
    out = q(z)
    assert torch.allclose(out.latents.norm(dim=1), torch.ones(1, 3, 3), atol=1e-5)
    sims = torch.einsum("bdhw,kd->bhwk", F.normalize(z, dim=1), q.codebook)
    assert torch.equal(sims.argmax(-1), out.indices)


def test_straight_through_gradient_reaches_the_input():
    q = VectorQuantizer(num_codes=16, code_dim=4).train()
    z = torch.randn(2, 4, 4, 4, requires_grad=True)
    out = q(z)
    (out.latents.sum() + out.commit_loss).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_first_training_batch_initialises_codebook_from_data():
    q = VectorQuantizer(num_codes=8, code_dim=4).train()
    assert not q.initialized
    data = F.normalize(torch.randn(8, 4), dim=1)
    # 8 tight clusters: after k-means the codes sit on the clusters (k-means may merge a pair: a local minimum)
    z = (data.repeat_interleave(50, 0) + 0.01 * torch.randn(400, 4)).T.reshape(1, 4, 20, 20)
    before = (q.codebook @ data.T).max(dim=1).values
    q(z)
    assert q.initialized
    after = (q.codebook @ data.T).max(dim=1).values
    assert (after > 0.99).sum() >= 6 and (before > 0.99).sum() == 0


def test_dead_codes_are_restarted_on_data():
    q = VectorQuantizer(num_codes=16, code_dim=4, decay=0.5, dead_code_threshold=0.5).train()
    z = F.normalize(torch.randn(1, 4, 8, 8), dim=1)
    q(z)  # init
    far = -F.normalize(z.mean(dim=(0, 2, 3)), dim=0)
    q.codebook[0] = far  # a code nothing maps to
    q.ema_sum[0] = far
    for _ in range(4):
        q(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 4)
    assert (flat @ q.codebook[0]).max() > 0.95, "the dead code should have been moved onto an encoder output"


def test_a_batch_with_fewer_tokens_than_codes_trains():
    """A codebook larger than a batch (e.g. 2,048 codes, 16 crops of 4x4 tokens): k-means starts the codebook from
    repeated vectors instead of failing, and every code stays a unit vector."""
    q = VectorQuantizer(num_codes=64, code_dim=4).train()
    out = q(torch.randn(1, 4, 4, 4))  # 16 tokens, 64 codes
    assert q.initialized and q.codebook.shape == (64, 4) and out.indices.shape == (1, 4, 4)
    assert torch.allclose(q.codebook.norm(dim=1), torch.ones(64), atol=1e-5)


def test_codes_used_as_often_as_the_rest_are_not_restarted_when_batches_are_small():
    """With 16 tokens a batch and 64 codes, a code is hit a quarter of a time per batch on average: an absolute
    restart threshold of 0.5 would restart every code over and over (codes jumping to random outputs); the
    threshold is at most half a uniform code's share, so a codebook that fits the data stays put."""
    torch.manual_seed(0)
    centres = F.normalize(torch.randn(64, 4), dim=1)
    q = VectorQuantizer(num_codes=64, code_dim=4).train()
    q(centres.T.reshape(1, 4, 8, 8))  # init on all 64 centres at once: one code per centre
    moved = torch.zeros(64, dtype=torch.bool)
    for step in range(400):
        picks = torch.randint(64, (16,))
        z = F.normalize(centres[picks] + 0.01 * torch.randn(16, 4), dim=1)
        before = q.codebook.clone()
        q(z.T.reshape(1, 4, 4, 4))
        if step >= 300:  # long after the counts settled: which codes jumped (a restart), not drifted (the EMA)
            moved |= (q.codebook * before).sum(dim=1) < 0.9
    assert moved.sum() <= 6, f"{int(moved.sum())} of 64 codes restarted although each is used like the rest"
    assert (q.lookup(centres).unique().numel()) >= 60  # and the codebook still serves every centre


def test_perplexity_bounds():
    q = VectorQuantizer(num_codes=64, code_dim=4).eval()
    out = q(torch.randn(4, 4, 8, 8))
    assert 1.0 <= out.perplexity.item() <= 64
    same = q(torch.ones(1, 4, 4, 4))
    assert same.perplexity.item() == pytest.approx(1.0)


def test_spherical_kmeans_returns_unit_centroids():
    x = F.normalize(torch.randn(200, 6), dim=1)
    c = spherical_kmeans(x, 10)
    assert c.shape == (10, 6)
    assert torch.allclose(c.norm(dim=1), torch.ones(10), atol=1e-5)
