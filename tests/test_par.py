"""PAR refinement and the two-threshold pseudo labels of MCC (docs/mcc.md §6)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2.config import CfgNode

from wss_d2.refinement import PAR, add_par_config, fuse_two_threshold_labels, par_image, refine_cams_with_background
from wss_d2.refinement.par import par_offsets

DILATIONS = [1, 2, 4, 8, 12, 24]


def naive_par(image, masks, dilations=DILATIONS, num_iter=10, w1=0.3, w2=0.01):
    """PAR written pixel by pixel in float64 numpy: image (3, H, W), masks (C, H, W)."""
    _, h, w = image.shape
    offsets = []
    for d in dilations:
        for dy in (-d, 0, d):
            for dx in (-d, 0, d):
                if (dy, dx) != (0, 0):
                    offsets.append((dy, dx))
    dist = np.array([math.hypot(dy, dx) for dy, dx in offsets])
    pos = -(dist / dist.std(ddof=1) / w1) ** 2
    pos = np.exp(pos - pos.max())
    pos /= pos.sum()
    kappa = np.zeros((h, w, len(offsets)))
    for y in range(h):
        for x in range(w):
            coords = [(min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)) for dy, dx in offsets]
            aff = np.zeros(len(offsets))
            for c in range(3):
                vals = np.array([image[c, yy, xx] for yy, xx in coords])
                aff += -(np.abs(vals - image[c, y, x]) / (vals.std(ddof=1) + 1e-8) / w1) ** 2
            aff /= 3
            aff = np.exp(aff - aff.max())
            kappa[y, x] = aff / aff.sum() + w2 * pos
    m = masks.astype(np.float64)
    for _ in range(num_iter):
        new = np.zeros_like(m)
        for y in range(h):
            for x in range(w):
                for n, (dy, dx) in enumerate(offsets):
                    yy, xx = min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)
                    new[:, y, x] += kappa[y, x, n] * m[:, yy, xx]
        m = new
    return m


def test_constants():
    offsets = par_offsets(DILATIONS)
    assert offsets.shape == (48, 2)
    distance = offsets.double().norm(dim=1)
    assert distance.std().item() == pytest.approx(9.90030, abs=1e-5)
    par = PAR()
    assert par.dilations == tuple(DILATIONS) and par.num_iter == 10 and par.w1 == 0.3 and par.w2 == 0.01
    weights = par.position_weights
    ring1 = weights[:8]
    axis = (offsets[:8] == 0).any(dim=1)
    assert torch.allclose(ring1[axis], torch.tensor(0.0765), atol=1e-4)
    assert torch.allclose(ring1[~axis], torch.tensor(0.0683), atol=1e-4)
    assert weights[32:].max() < 1e-8  # dilations 12 and 24: about 0
    assert weights.sum().item() == pytest.approx(1.0, abs=1e-6)
    # colour softmax sums to 1, plus 0.01 of position: 1.01, not renormalised
    kappa = par.kernel(torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(0)))
    assert torch.allclose(kappa.sum(dim=1), torch.full((1, 9, 11), 1.01), atol=1e-5)


def test_par_matches_naive_loop():
    g = torch.Generator().manual_seed(1)
    image = torch.rand(1, 3, 7, 9, generator=g)
    image[:, :, :, 5:] += 0.5  # an edge so that the colour affinity matters
    masks = torch.rand(1, 3, 7, 9, generator=g)
    out = PAR()(image, masks)
    ref = naive_par(image[0].double().numpy(), masks[0].double().numpy())
    np.testing.assert_allclose(out[0].double().numpy(), ref, rtol=1e-5, atol=1e-6)
    # the kernel sums to 1.01, so a constant map grows by 1.01 per iteration
    ones = PAR(num_iter=3)(image, torch.ones(1, 2, 7, 9))
    assert torch.allclose(ones, torch.full_like(ones, 1.01 ** 3), atol=1e-5)


def test_par_batch_independent_and_mask_resize():
    g = torch.Generator().manual_seed(2)
    images = torch.rand(2, 3, 10, 12, generator=g)
    masks = torch.rand(2, 4, 10, 12, generator=g)
    par = PAR(num_iter=4)
    both = par(images, masks)
    assert torch.allclose(both[1:], par(images[1:], masks[1:]), atol=1e-6)
    # smaller masks are resized with align_corners=True: the corners are kept exactly
    small = torch.rand(1, 2, 4, 5, generator=g)
    resized = PAR(num_iter=0)(images[:1], small)
    assert resized.shape == (1, 2, 10, 12)
    for y, x, ys, xs in ((0, 0, 0, 0), (0, -1, 0, -1), (-1, 0, -1, 0), (-1, -1, -1, -1)):
        assert resized[0, :, y, x].tolist() == pytest.approx(small[0, :, ys, xs].tolist(), abs=1e-6)


def test_par_errors_and_config():
    with pytest.raises(ValueError, match="batch size"):
        PAR()(torch.rand(2, 3, 8, 8), torch.rand(1, 2, 8, 8))
    with pytest.raises(ValueError, match="4-d"):
        PAR()(torch.rand(3, 8, 8), torch.rand(1, 2, 8, 8))
    with pytest.raises(ValueError, match="dilations"):
        PAR(dilations=[0, 1])
    cfg = CfgNode({"MODEL": CfgNode({"MCC": CfgNode({"PAR": CfgNode()})})})
    add_par_config(cfg.MODEL.MCC.PAR)
    cfg.MODEL.MCC.PAR.ITERS = 3
    par = PAR(cfg)
    assert par.num_iter == 3 and par.dilations == tuple(DILATIONS) and cfg.MODEL.MCC.PAR.DOWNSCALE == 2


def test_par_image_truncates():
    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    target = torch.tensor([122.9999, 17.5, 255.4])  # a hair below 123; half-way; above 255
    normalized = ((target.double() - torch.tensor(mean).double()) / torch.tensor(std).double()).view(1, 3, 1, 1)
    out = par_image(normalized, mean, std).view(3)
    assert out.tolist() == pytest.approx([122 / 255, 17 / 255, 1.0], abs=1e-7)
    with pytest.raises(ValueError, match="B, 3, H, W"):
        par_image(torch.zeros(1, 1, 2, 2), mean, std)


def test_fusion_rule():
    high = torch.tensor([[3, 0, 0, 255]])
    low = torch.tensor([[1, 0, 2, 255]])
    assert fuse_two_threshold_labels(high, low).tolist() == [[3, 0, 255, 255]]


def _hand_made_cams():
    """(1, 3, 4, 6) CAMs of three classes; class 2 (index 1) is not among the tags."""
    cams = torch.zeros(1, 3, 4, 6)
    cams[0, 0, :, 0:2] = 0.9  # confident class 1
    cams[0, 0, :, 2:4] = 0.5  # between low (0.25) and high (0.7): uncertain
    cams[0, 1, :, 4:6] = 0.99  # an absent class: must never win
    cams[0, 2, 0, 4:6] = 0.3  # class 3 slightly above the low threshold: uncertain
    return cams


def test_pseudo_labels_thresholds_by_hand():
    cams = _hand_made_cams()
    tags = torch.tensor([[1.0, 0.0, 1.0]])
    images = torch.rand(1, 3, 4, 6, generator=torch.Generator().manual_seed(3))
    box = torch.tensor([[0, 3, 0, 6]])  # the last row is padding
    labels = refine_cams_with_background(
        PAR(num_iter=0), images, cams, tags, box, high_thre=0.7, low_thre=0.25, down_scale=1
    )
    expected = torch.tensor([
        [1, 1, 255, 255, 255, 255],
        [1, 1, 255, 255, 0, 0],
        [1, 1, 255, 255, 0, 0],
        [255, 255, 255, 255, 255, 255],
    ])
    assert labels.dtype == torch.int64
    assert torch.equal(labels[0], expected)


def test_pseudo_labels_match_per_image_subset_softmax():
    """The masked softmax over all channels equals the per-image softmax over present channels."""
    g = torch.Generator().manual_seed(4)
    b, k, h, w = 2, 4, 16, 20
    cams = torch.rand(b, k, h, w, generator=g)
    tags = torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0]])
    images = torch.rand(b, 3, h, w, generator=g)
    boxes = torch.tensor([[0, 16, 0, 20], [2, 14, 3, 20]])
    par = PAR(dilations=[1, 2, 4], num_iter=10)
    labels = refine_cams_with_background(par, images, cams, tags, boxes, high_thre=0.7, low_thre=0.25)
    small = F.interpolate(images, size=(h // 2, w // 2), mode="bilinear", align_corners=False)
    for i in range(b):
        keys = torch.cat([torch.zeros(1, dtype=torch.long), tags[i].nonzero()[:, 0] + 1])
        per_threshold = []
        for thr in (0.7, 0.25):
            stack = torch.cat([torch.full((1, 1, h, w), thr), cams[i:i + 1] * tags[i][None, :, None, None]], 1)
            stack = F.interpolate(stack, size=(h // 2, w // 2), mode="bilinear", align_corners=False)
            refined = par(small[i:i + 1], stack[:, keys].softmax(dim=1))
            refined = F.interpolate(refined, size=(h, w), mode="bilinear", align_corners=False)
            lab = torch.full((h, w), 255, dtype=torch.long)
            y0, y1, x0, x1 = boxes[i].tolist()
            lab[y0:y1, x0:x1] = keys[refined[0].argmax(0)][y0:y1, x0:x1]
            per_threshold.append(lab)
        hi, lo = per_threshold
        ref = hi.clone()
        ref[hi == 0] = 255
        ref[(hi == 0) & (lo == 0)] = 0
        assert torch.equal(labels[i], ref)
    assert set(labels[1].unique().tolist()) <= {0, 2, 255}


def test_pseudo_label_errors():
    cams = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="cls_labels"):
        refine_cams_with_background(PAR(), torch.rand(1, 3, 8, 8), cams, torch.ones(1, 2),
                                    torch.tensor([[0, 8, 0, 8]]), high_thre=0.7, low_thre=0.25)
    with pytest.raises(ValueError, match="share batch size"):
        refine_cams_with_background(PAR(), torch.rand(1, 3, 6, 8), cams, torch.ones(1, 3),
                                    torch.tensor([[0, 8, 0, 8]]), high_thre=0.7, low_thre=0.25)
