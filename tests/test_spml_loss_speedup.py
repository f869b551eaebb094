"""
SPML's loss path against a recorded expectation: the per-term losses and the embedding gradients of
`spml_total_loss` (both numerical modes, (C)/(O)/(V) of the VOC recipe, (C)/(V)/(A) of DensePose, with
memory candidates and chunking) and the k-means assignment, as computed by the implementation before
its speed-up (tests/data/spml_loss_reference.pt, written by `python tests/test_spml_loss_speedup.py
--record`). Losses must agree to 1e-6 relative, gradients to 1e-5.
"""
import os
import sys

import pytest
import torch
import torch.nn.functional as F

from wss_d2.methods.spml.losses import SPML_SETTINGS, SPMLCandidates, pixel_segment_contrastive_loss, spml_total_loss
from wss_d2.methods.spml.segments import form_segments

REFERENCE = os.path.join(os.path.dirname(__file__), "data", "spml_loss_reference.pt")

# name: (seed, images, embedding dim, height, width, classes, grid, k-means iterations, chunk size)
CASES = {
    "tests_batch0": (0, 3, 5, 6, 6, 4, 2, 3, 4096),
    "tests_batch1_chunked": (1, 3, 5, 6, 6, 4, 2, 3, 7),
    "synthetic": (2, 4, 16, 20, 20, 6, 3, 10, 150),
    "synthetic_big": (3, 4, 32, 28, 28, 6, 6, 10, 4096),
}


def _inputs(seed, b, d, h, w, k):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(b, d, h, w, generator=g)
    # smooth-ish labels / regions so that segments are not all singletons
    labels = torch.randint(0, k + 1, (b, 1, max(h // 3, 1), max(w // 3, 1)), generator=g).float()
    labels = F.interpolate(labels, size=(h, w), mode="nearest")[:, 0].long()  # k = unlabelled
    labels[:, 0, 0] = 255
    regions = torch.randint(0, 4, (b, 1, max(h // 2, 1), max(w // 2, 1)), generator=g).float()
    regions = F.interpolate(regions, size=(h, w), mode="nearest")[:, 0].long()
    tags = (torch.rand(b, k - 1, generator=g) > 0.6).float()
    tags[-1] = 0.0  # an image without foreground tag
    memory = F.normalize(torch.randn(b * 12, d, generator=g), dim=1)
    return emb, labels, regions, tags, memory


def compute(name, exact, num_current=False):
    seed, b, d, h, w, k, grid, iters, chunk = CASES[name]
    emb, labels, regions, tags, memory = _inputs(seed, b, d, h, w, k)
    out = {}
    for setting in ("voc_tags", "densepose_points"):
        e = emb.clone().requires_grad_(True)
        dp = setting == "densepose_points"
        s = form_segments(e, labels, k, regions=regions, tags=tags, grid=(grid, grid), iterations=iters,
                          affinity_scale=0.1 if dp else None)
        m = memory.shape[0]
        g = torch.Generator().manual_seed(seed + 100)
        mem_labels = torch.randint(0, k + 1, (m,), generator=g)
        mem_images = torch.randint(0, b, (m,), generator=g) + b
        mem_tags = (torch.rand(m, k - 1, generator=g) > 0.5).float()
        cand = SPMLCandidates(
            torch.cat([s.prototypes, memory]), torch.cat([s.segment_label, mem_labels]),
            torch.cat([s.segment_image, mem_images]), torch.cat([s.segment_tags, mem_tags]),
            torch.cat([s.aff_prototypes, F.normalize(torch.randn(m, s.aff_prototypes.shape[1], generator=g), dim=1)])
            if dp else None,
            num_current=s.num_segments if num_current else None,
        )
        terms = spml_total_loss(s, cand, 0, k, SPML_SETTINGS[setting], ce_loss=torch.tensor(0.25),
                                feature_affinity=dp, exact=exact, chunk_size=chunk)
        total = sum(terms.values())
        total.backward()
        for key, v in terms.items():
            out[f"{setting}/{key}"] = v.detach().clone()
        out[f"{setting}/grad"] = e.grad.clone()
        out[f"{setting}/cluster_ids"] = s.cluster_ids.clone()
        out[f"{setting}/pixel_segment"] = s.pixel_segment.clone()
    return out


def _record():
    ref = {}
    for name in CASES:
        for exact in (False, True):
            for key, v in compute(name, exact).items():
                ref[f"{name}/{'exact' if exact else 'official'}/{key}"] = v
    torch.save(ref, REFERENCE)
    print(f"wrote {len(ref)} tensors to {REFERENCE}")


@pytest.mark.parametrize("num_current", [False, True])
@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("name", list(CASES))
def test_same_losses_and_gradients_as_recorded(name, exact, num_current):
    # num_current: the memory candidates' prototype gradients are skipped (they are constants here)
    ref = torch.load(REFERENCE)
    prefix = f"{name}/{'exact' if exact else 'official'}/"
    got = compute(name, exact, num_current)
    assert set(prefix + k for k in got) == {k for k in ref if k.startswith(prefix)}
    for key, v in got.items():
        r = ref[prefix + key]
        if key.endswith(("cluster_ids", "pixel_segment")):
            assert torch.equal(v, r), key
        elif key.endswith("grad"):
            scale = r.abs().max().clamp_min(1e-30)
            assert torch.allclose(v, r, rtol=1e-5, atol=1e-5 * scale), (key, (v - r).abs().max() / scale)
        else:
            assert torch.allclose(v, r, rtol=1e-6, atol=0.0), (key, v.item(), r.item())


def _problem(seed=0, p=300, s=90, d=8):
    g = torch.Generator().manual_seed(seed)
    f = F.normalize(torch.randn(p, d, generator=g), dim=1)
    protos = F.normalize(torch.randn(s, d, generator=g), dim=1)
    own = torch.randint(0, s, (p,), generator=g)
    seg_image = torch.sort(torch.randint(0, 4, (s,), generator=g)).values
    seg_region = torch.randint(0, 3, (s,), generator=g)
    tags = (torch.rand(4, 3, generator=g) > 0.5).float()
    return f, protos, own, seg_image, seg_region, tags


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("relation", ["keys_groups", "sets"])
def test_kept_and_recomputed_backward_agree(exact, relation):
    f0, p0, own, seg_image, seg_region, tags = _problem()
    if relation == "keys_groups":  # (V)-like
        kw = dict(pixel_keys=seg_region[own], segment_keys=seg_region, pixel_groups=seg_image[own],
                  segment_groups=seg_image)
    else:  # (O)-like, with pixels in image order (few runs) and shuffled (row gather)
        kw = dict(pixel_sets=tags[seg_image[own]], segment_sets=tags[seg_image])
    results = []
    for keep_bytes, use_checkpoint, chunk in ((2**30, True, 64), (0, True, 64), (0, False, 1000), (0, True, 7)):
        f, p = f0.clone().requires_grad_(True), p0.clone().requires_grad_(True)
        per = pixel_segment_contrastive_loss(f, own, p, 12.0, exact=exact, chunk_size=chunk, keep_bytes=keep_bytes,
                                             use_checkpoint=use_checkpoint, **kw)
        (per * torch.linspace(0.5, 1.5, per.shape[0])).sum().backward()
        results.append((per.detach(), f.grad, p.grad))
    with torch.no_grad():
        nograd = pixel_segment_contrastive_loss(f0, own, p0, 12.0, exact=exact, chunk_size=64, **kw)
    for r in results[1:]:
        # other chunk shapes give other matmul roundings: ~1 ulp of logits of size kappa
        assert torch.allclose(results[0][0], r[0], rtol=1e-6, atol=1e-6)
        for a, b in zip(results[0][1:], r[1:]):  # gradients: 1e-5 of their scale
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-5 * a.abs().max().item())
    assert torch.equal(nograd, results[0][0])


def test_grad_rows_skip_only_the_trailing_rows():
    f0, p0, own, seg_image, _, tags = _problem(1)
    kw = dict(pixel_sets=tags[seg_image[own]], segment_sets=tags[seg_image])
    grads = []
    for grad_rows in (None, 40):
        p = p0.clone().requires_grad_(True)
        pixel_segment_contrastive_loss(f0, own, p, 8.0, grad_rows=grad_rows, **kw).mean().backward()
        grads.append(p.grad)
    assert torch.allclose(grads[0][:40], grads[1][:40], rtol=1e-6, atol=1e-8)
    assert (grads[1][40:] == 0).all() and (grads[0][40:] != 0).any()


if __name__ == "__main__" and "--record" in sys.argv:
    _record()
