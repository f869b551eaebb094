"""MCC's key masks, flags and losses (wss_d2/methods/mcc/, docs/mcc.md §4.1, §4.3, §5.1-§5.3, §16)
against hand-computed values and naive loops."""
import math

import pytest
import torch
import torch.nn.functional as F

from wss_d2.methods.mcc import (
    affinity_labels,
    affinity_loss,
    block_key_masks,
    classification_loss,
    key_policy,
    mcc_contrast_loss,
    mcc_masks,
    ptc_token_labels,
    roi_map,
    segmentation_loss,
    segmentation_loss_halves,
    view_flags,
)
from wss_d2.refinement import fuse_two_threshold_labels

IGNORE = 255


# ---------------------------------------------------------------- masks and flags (§4.1)
def test_mask_statistics_over_many_draws():
    # 28x28 grid (448 crop) -> 7x7 cells; 8000 views, 392k cells
    gen = torch.Generator().manual_seed(0)
    masks = block_key_masks(1000, 8, (28, 28), block=4, mask_rate=0.95, generator=gen)
    assert masks.shape == (1000, 8, 28, 28) and masks.dtype == torch.bool
    visible = (~masks).float().mean().item()
    assert visible == pytest.approx(0.05, abs=0.003)  # std of the mean ~ 3.5e-4
    fully = masks.flatten(2).all(dim=2).float().mean().item()
    assert fully == pytest.approx(0.95**49, abs=0.012)  # 0.081, std ~ 0.003
    # block structure: every aligned 4x4 block is constant
    blocks = masks.reshape(1000, 8, 7, 4, 7, 4)
    assert (blocks == blocks[:, :, :, :1, :, :1]).all()
    # visible counts are multiples of 16 tokens
    assert ((~masks).sum(dim=(2, 3)) % 16 == 0).all()


def test_masks_are_deterministic_per_generator_and_independent_per_view():
    a = block_key_masks(4, 8, (28, 28), generator=torch.Generator().manual_seed(3))
    b = block_key_masks(4, 8, (28, 28), generator=torch.Generator().manual_seed(3))
    c = block_key_masks(4, 8, (28, 28), generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # with mask_rate 0.5 two views of one image almost never coincide (2^-49)
    d = block_key_masks(2, 8, (28, 28), mask_rate=0.5, generator=torch.Generator().manual_seed(0))
    flat = d.flatten(2)
    same = (flat[:, :, None] == flat[:, None, :]).all(dim=-1)  # (B, M, M)
    assert not same.masked_fill(torch.eye(8, dtype=torch.bool), False).any()


def test_mask_rate_extremes_and_errors():
    gen = torch.Generator().manual_seed(0)
    assert block_key_masks(2, 3, (8, 8), mask_rate=1.0, generator=gen).all()
    assert not block_key_masks(2, 3, (8, 8), mask_rate=0.0, generator=gen).any()
    with pytest.raises(ValueError, match="MODEL.MCC.MASK.BLOCK"):
        block_key_masks(1, 8, (30, 28), block=4)
    with pytest.raises(ValueError, match="MODEL.MCC.MASK.RATIO"):
        block_key_masks(1, 8, (28, 28), mask_rate=1.5)


def test_roi_map_thresholds_by_hand():
    # K = 2 classes at the grid size (no resize); class 1 absent from the tags
    cam0 = torch.tensor([[0.25, 0.26, 0.69], [0.70, 0.0, 1.0]])
    cam1 = torch.full((2, 3), 0.9)
    cams = torch.stack([cam0, cam1])[None]
    roi = roi_map(cams, torch.tensor([[1.0, 0.0]]), (2, 3), low_thre=0.25, high_thre=0.7)
    assert roi.tolist() == [[[0, 1, 1], [2, 0, 2]]]
    # with class 1 present its 0.9 wins everywhere
    roi = roi_map(cams, torch.tensor([[1.0, 1.0]]), (2, 3))
    assert roi.tolist() == [[[2, 2, 2], [2, 2, 2]]]
    # bicubic 448 -> 28 of a constant map is the constant
    const = torch.full((1, 1, 448, 448), 0.5)
    assert roi_map(const, torch.ones(1, 1), (28, 28)).unique().tolist() == [1]
    with pytest.raises(ValueError, match="LOW_THRE"):
        roi_map(cams, torch.ones(1, 2), (2, 3), low_thre=0.8, high_thre=0.7)


def test_view_flags_by_hand():
    # 8x8 grid, 2x2 blocks of 4x4; visible = one block (16 tokens) -> positive iff roi sum > 3.2
    roi = torch.zeros(1, 8, 8, dtype=torch.long)
    roi[0, 0, :3] = 1  # top-left block: sum 3 -> negative (3 <= 3.2)
    roi[0, 4, 4:8] = 1  # bottom-right block: sum 4 -> positive
    roi[0, 0, 4] = 2
    roi[0, 1, 4] = 2  # top-right block: sum 4 -> positive
    masks = torch.ones(1, 4, 8, 8, dtype=torch.bool)
    masks[0, 0, :4, :4] = False
    masks[0, 1, 4:, 4:] = False
    masks[0, 2, :4, 4:] = False
    # view 3 fully masked -> 0 <= 0 -> negative
    flags = view_flags(masks, roi, pos_frac=0.2, num_global=2)
    assert flags.tolist() == [[1, 1, 0, 1, 1, 0]]
    # two visible blocks (32 tokens, threshold 6.4): sums 3 + 4 = 7 -> positive
    masks2 = torch.ones(1, 1, 8, 8, dtype=torch.bool)
    masks2[0, 0, :4, :] = False
    assert view_flags(masks2, roi).tolist() == [[1, 1, 1]]


def test_flag_statistics_small_and_large_grids():
    # docs/mcc.md Errata 5: with an 8x8 grid (128 px crop, 2x2 blocks) a view is fully masked,
    # hence negative, with probability 0.95^4 ~ 0.81, even if the whole crop is foreground
    n = 4000
    gen = torch.Generator().manual_seed(1)
    cams = torch.ones(n, 1, 8, 8)
    out = mcc_masks(cams, torch.ones(n, 1), (8, 8), num_local=2, generator=gen)
    negative = (out.flags[:, 2:] == 0).float().mean().item()
    assert negative == pytest.approx(0.95**4, abs=0.02)
    assert (out.flags[:, :2] == 1).all()
    # a 28x28 grid of confident foreground: negative only when fully masked (0.95^49)
    cams = torch.ones(500, 1, 28, 28)
    out = mcc_masks(cams, torch.ones(500, 1), (28, 28), generator=torch.Generator().manual_seed(2))
    fully = out.masks.flatten(2).all(dim=2)
    assert torch.equal(out.flags[:, 2:] == 0, fully)
    assert fully.float().mean().item() == pytest.approx(0.95**49, abs=0.03)
    # confident background everywhere: every local view negative
    out = mcc_masks(torch.zeros(50, 1, 28, 28), torch.ones(50, 1), (28, 28), generator=torch.Generator().manual_seed(2))
    assert (out.flags[:, 2:] == 0).all() and (out.flags[:, :2] == 1).all()


def test_policy_layout_and_shapes():
    gen = torch.Generator().manual_seed(0)
    cams = torch.rand(3, 2, 64, 64, generator=gen)
    out = mcc_masks(cams, torch.ones(3, 2), (8, 8), num_local=5, mask_rate=0.5, generator=gen)
    assert out.policy.shape == (15, 65) and out.flags.shape == (3, 7) and out.roi.shape == (3, 8, 8)
    assert (out.policy[:, 0] == 0).all()
    for m in range(5):
        for b in range(3):
            assert torch.equal(out.policy[m * 3 + b, 1:], out.masks[b, m].flatten().float())
    assert torch.equal(key_policy(out.masks), out.policy)


def test_policy_hides_masked_patches_from_the_cls_token():
    """Through the MaskableViT: pixels under a masked block cannot change the CLS output, visible ones do."""
    from wss_d2.modeling.backbone.vit import MaskableViT

    torch.manual_seed(0)
    vit = MaskableViT(embed_dim=32, depth=2, num_heads=4, aux_layer=-1).eval()
    masks = torch.ones(1, 1, 8, 8, dtype=torch.bool)
    masks[0, 0, 4:, :4] = False  # bottom-left block visible
    policy = key_policy(masks)
    image = torch.randn(1, 3, 128, 128)
    hidden = image.clone()
    hidden[..., :64, 64:] += 5.0  # inside the masked top-right block
    shown = image.clone()
    shown[..., 64:, :64] += 5.0  # inside the visible block
    with torch.no_grad():
        base = vit(image, policy)["cls"]
        assert torch.allclose(vit(hidden, policy)["cls"], base, atol=1e-6)
        assert not torch.allclose(vit(shown, policy)["cls"], base, atol=1e-3)


# ---------------------------------------------------------------- MCC loss (§4.3)
def _mcc_naive(student, teacher, flags, temperature=0.5, eps=1e-4):
    """The direct form of docs/mcc.md §4.3, one image and one pair at a time, in float64."""
    b, v = flags.shape
    g = teacher.shape[0] // b
    total = 0.0
    for i in range(b):
        pos = [m for m in range(v) if flags[i, m] == 1]
        neg = [m for m in range(v) if flags[i, m] == 0]
        loss_i = 0.0
        for gv in range(g):
            t = teacher[gv * b + i].double()
            e = [torch.exp(t @ student[m * b + i].double() / temperature) for m in range(v)]
            s_neg = sum((e[m] for m in neg), torch.tensor(0.0, dtype=torch.float64))
            for m in pos:
                loss_i = loss_i - torch.log(e[m] / (e[m] + s_neg + eps))
            loss_i = loss_i + torch.log(1 + s_neg + eps)
        total = total + loss_i / (2 * (len(pos) + eps))
    return total / b


def test_mcc_loss_by_hand():
    # D = 1: t = (1, 0.5), s = (1, 0, 2), flags (1, 1, 0), τ = 0.5 -> ℓ_0 = (2, 0, 4), ℓ_1 = (1, 0, 2)
    student = torch.tensor([[1.0], [0.0], [2.0]])
    teacher = torch.tensor([[1.0], [0.5]])
    flags = torch.tensor([[1, 1, 0]])
    e = math.exp
    s0, s1 = e(4), e(2)
    expected = (
        -math.log(e(2) / (e(2) + s0 + 1e-4))
        - math.log(1 / (1 + s0 + 1e-4))
        + math.log(1 + s0 + 1e-4)
        - math.log(e(1) / (e(1) + s1 + 1e-4))
        - math.log(1 / (1 + s1 + 1e-4))
        + math.log(1 + s1 + 1e-4)
    ) / (2 * (2 + 1e-4))
    assert mcc_contrast_loss(student, teacher, flags, temperature=0.5).item() == pytest.approx(expected, rel=1e-6)


def test_mcc_loss_matches_direct_form_with_gradient():
    gen = torch.Generator().manual_seed(0)
    b, v, d = 3, 10, 16
    student = (torch.rand(v * b, d, generator=gen) * 2 - 1).requires_grad_()
    teacher = (torch.rand(2 * b, d, generator=gen) * 2 - 1).requires_grad_()
    flags = torch.ones(b, v, dtype=torch.long)
    flags[0, [2, 5, 6]] = 0
    flags[1, 2:] = 0  # only the globals positive
    # image 2: no negatives
    loss = mcc_contrast_loss(student, teacher, flags)
    ref = _mcc_naive(student, teacher, flags)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    loss.backward()
    grad = student.grad.clone()
    assert teacher.grad is None  # the teacher gets no gradient
    student.grad = None
    s64 = student.detach().double().requires_grad_()
    _mcc_naive(s64, teacher.detach(), flags).backward()
    assert torch.allclose(grad.double(), s64.grad, rtol=1e-4, atol=1e-7)


def test_mcc_loss_without_negatives_is_the_eps_term():
    # ℓ = 0 for every pair (orthogonal outputs): each term is log(1 + 1e-4)
    b, v = 2, 10
    student = torch.zeros(v * b, 4)
    student[:, 0] = 1.0
    teacher = torch.zeros(2 * b, 4)
    teacher[:, 1] = 1.0
    flags = torch.ones(b, v, dtype=torch.long)
    expected = 2 * (v + 1) * math.log(1 + 1e-4) / (2 * (v + 1e-4))
    assert mcc_contrast_loss(student, teacher, flags).item() == pytest.approx(expected, rel=1e-5)


def test_mcc_loss_is_stable_for_large_logits():
    # ℓ up to 400 overflows exp in float32; the loss must equal the float64 direct form
    student = torch.tensor([[10.0, 0.0], [10.0, 0.0], [0.0, 10.0], [-10.0, 0.0]])
    teacher = torch.tensor([[20.0, 0.0], [0.0, 20.0]])
    flags = torch.tensor([[1, 1, 0, 1]])
    loss = mcc_contrast_loss(student, teacher, flags)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(_mcc_naive(student, teacher, flags).item(), rel=1e-5)


def test_mcc_loss_shape_errors():
    with pytest.raises(ValueError, match="V·B"):
        mcc_contrast_loss(torch.zeros(9, 4), torch.zeros(2, 4), torch.ones(1, 10))
    with pytest.raises(ValueError, match="TEMP"):
        mcc_contrast_loss(torch.zeros(10, 4), torch.zeros(2, 4), torch.ones(1, 10), temperature=0.0)


# ---------------------------------------------------------------- classification (§5.1)
def test_classification_loss_by_hand():
    logits = torch.tensor([[2.0, -1.0, 0.0], [0.5, 0.5, -3.0]])
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])

    def bce(x, y):
        p = 1 / (1 + math.exp(-x))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    expected = sum(bce(logits[i, k].item(), labels[i, k].item()) for i in range(2) for k in range(3)) / 6
    assert classification_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="cls_labels"):
        classification_loss(logits, labels[:, :2])


# ---------------------------------------------------------------- affinity labels and loss (§5.2)
def test_ptc_token_labels_by_hand():
    # K = 2 at a 2x3 grid (no resize); thresholds 0.25 / 0.7
    cam0 = torch.tensor([[0.9, 0.7, 0.3], [0.25, 0.1, 0.0]])
    cam1 = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.8, 0.75]])
    cams = torch.stack([cam0, cam1])[None]
    tags = torch.ones(1, 2)
    box = torch.tensor([[0, 448, 0, 448]])
    labels = ptc_token_labels(cams, tags, box, (2, 3))
    assert labels.tolist() == [[[1, IGNORE, IGNORE], [0, 2, 2]]]
    # class 2 absent: its tokens fall back to class 1's values (0.1 and 0.0 -> background)
    labels = ptc_token_labels(cams, torch.tensor([[1.0, 0.0]]), box, (2, 3))
    assert labels.tolist() == [[[1, IGNORE, IGNORE], [0, 0, 0]]]
    # quirk: the pixel box slices the token grid; h0 = 1 px drops grid row 0, w0 >= 3 px drops all
    assert ptc_token_labels(cams, tags, torch.tensor([[1, 448, 0, 448]]), (2, 3)).tolist() == [
        [[IGNORE] * 3, [0, 2, 2]]
    ]
    assert (ptc_token_labels(cams, tags, torch.tensor([[0, 448, 3, 448]]), (2, 3)) == IGNORE).all()
    # fix: box in pixels -> tokens (start floored, end ceiled by 16): rows 1.., cols 0..1
    fixed = ptc_token_labels(cams, tags, torch.tensor([[16, 448, 0, 20]]), (2, 3), pixel_box_quirk=False)
    assert fixed.tolist() == [[[IGNORE] * 3, [0, 2, IGNORE]]]


def test_ptc_token_labels_resize_is_bilinear():
    cams = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    tags = torch.tensor([[1.0, 0.0, 1.0]])
    labels = ptc_token_labels(cams, tags, torch.tensor([[0, 32, 0, 32]]), (4, 4), low_thre=0.45, high_thre=0.55)
    small = F.interpolate(cams, size=(4, 4), mode="bilinear", align_corners=False) * tags[:, :, None, None]
    for r in range(4):
        for c in range(4):
            value, k = small[0, :, r, c].max(0)
            want = 0 if value <= 0.45 else (IGNORE if value <= 0.55 else int(k) + 1)
            assert labels[0, r, c].item() == want


def test_affinity_labels_on_a_hand_made_map():
    labels = torch.tensor([[[0, 1], [1, IGNORE]]])
    x = IGNORE
    expected = [
        [x, 0, 0, x],
        [0, x, 1, x],
        [0, 1, x, x],
        [x, x, x, x],
    ]
    aff = affinity_labels(labels)
    assert aff.shape == (1, 4, 4) and aff.tolist() == [expected]
    # background-background pairs are positives
    assert affinity_labels(torch.tensor([[0, 0, 3]])).tolist() == [[[x, 1, 0], [1, x, 0], [0, 0, x]]]


def test_affinity_labels_match_a_naive_loop():
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (2, 3, 3), generator=gen)
    labels[labels == 3] = IGNORE
    aff = affinity_labels(labels)
    flat = labels.flatten(1)
    for b in range(2):
        for i in range(9):
            for j in range(9):
                li, lj = flat[b, i].item(), flat[b, j].item()
                want = IGNORE if (i == j or li == IGNORE or lj == IGNORE) else int(li == lj)
                assert aff[b, i, j].item() == want


def test_affinity_loss_by_hand():
    # tokens (1,0), (0,1), (1,1)/√2 and (-1, 0) with labels 1, 0, 1, 2 on a 1x4 grid
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]]).T.reshape(1, 2, 1, 4)
    aff = affinity_labels(torch.tensor([[[1, 0, 1, 2]]]))
    r = 1 / math.sqrt(2)
    # |cos|: c01 = 0, c02 = r, c03 = 1, c12 = r, c13 = 0, c23 = r
    pos_sum, n_pos = 2 * r, 2  # (0,2), (2,0)
    neg_sum, n_neg = 2 * (0 + 1 + r + 0 + r), 10
    expected = 0.5 * (1 - pos_sum / (n_pos + 1)) + 0.5 * neg_sum / (n_neg + 1)
    assert affinity_loss(f, aff).item() == pytest.approx(expected, rel=1e-6)


def test_affinity_loss_pools_over_the_batch():
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 5, 2, 3, generator=gen)
    labels = torch.randint(0, 3, (2, 2, 3), generator=gen)
    aff = affinity_labels(labels)
    pos_sum = neg_sum = 0.0
    n_pos = n_neg = 0
    for b in range(2):
        tokens = feats[b].reshape(5, 6)
        for i in range(6):
            for j in range(6):
                c = abs(F.cosine_similarity(tokens[:, i], tokens[:, j], dim=0).item())
                if aff[b, i, j] == 1:
                    pos_sum, n_pos = pos_sum + c, n_pos + 1
                elif aff[b, i, j] == 0:
                    neg_sum, n_neg = neg_sum + c, n_neg + 1
    expected = 0.5 * (1 - pos_sum / (n_pos + 1)) + 0.5 * neg_sum / (n_neg + 1)
    assert affinity_loss(feats, aff).item() == pytest.approx(expected, rel=1e-5)


def test_affinity_loss_identical_features_and_empty_map():
    # identical features, every one of the n valid pairs positive: 0.5·(1 − n/(n+1))
    feats = torch.ones(1, 3, 2, 2, requires_grad=True)
    aff = affinity_labels(torch.zeros(1, 2, 2, dtype=torch.long))
    n = 4 * 3
    assert affinity_loss(feats, aff).item() == pytest.approx(0.5 * (1 - n / (n + 1)), rel=1e-6)
    # every token ignored (e.g. the pixel box of §15 Q2): constant 0.5, zero and finite gradient
    feats = torch.randn(2, 3, 2, 2).requires_grad_()
    aff = affinity_labels(torch.full((2, 2, 2), IGNORE))
    loss = affinity_loss(feats, aff)
    assert loss.item() == 0.5
    loss.backward()
    assert torch.equal(feats.grad, torch.zeros_like(feats))
    with pytest.raises(ValueError, match="aff_labels"):
        affinity_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 3))


# ---------------------------------------------------------------- segmentation loss (§5.3)
def _ce(logit_column, target):
    return -(logit_column[target] - torch.logsumexp(logit_column, 0)).item()


def test_segmentation_loss_halves_by_hand():
    # 3 classes, 1x4 pixels, labels (0, 0, 2, 255): bg mean over 2 pixels, fg over 1
    logits = torch.tensor([[1.0, 0.0, 2.0, 5.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.5, 1.0, 0.0]]).reshape(1, 3, 1, 4)
    labels = torch.tensor([[[0, 0, 2, IGNORE]]])
    col = logits[0, :, 0]
    bg = (_ce(col[:, 0], 0) + _ce(col[:, 1], 0)) / 2
    fg = _ce(col[:, 2], 2)
    ce_bg, ce_fg = segmentation_loss_halves(logits, labels)
    assert ce_bg.item() == pytest.approx(bg, rel=1e-6) and ce_fg.item() == pytest.approx(fg, rel=1e-6)
    assert segmentation_loss(logits, labels).item() == pytest.approx(0.5 * (bg + fg), rel=1e-6)
    # not the plain mean over the 3 labelled pixels
    assert segmentation_loss(logits, labels).item() != pytest.approx((2 * bg + fg) / 3, rel=1e-3)


def test_segmentation_loss_empty_half_is_zero_with_zero_gradient():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 3, 3, generator=gen).requires_grad_()
    labels = torch.zeros(2, 3, 3, dtype=torch.long)
    labels[0, 0] = IGNORE  # no foreground anywhere
    loss = segmentation_loss(logits, labels)
    ce_bg, ce_fg = segmentation_loss_halves(logits, labels)
    assert ce_fg.item() == 0.0
    assert loss.item() == pytest.approx(0.5 * F.cross_entropy(logits, labels, ignore_index=IGNORE).item(), rel=1e-6)
    loss.backward()
    grad = logits.grad.clone()
    assert torch.isfinite(grad).all()
    assert torch.equal(grad[0, :, 0], torch.zeros_like(grad[0, :, 0]))  # ignored pixels
    logits.grad = None
    (0.5 * F.cross_entropy(logits, labels, ignore_index=IGNORE)).backward()
    assert torch.allclose(grad, logits.grad, atol=1e-7)
    # both halves empty: 0 and an all-zero gradient
    logits.grad = None
    loss = segmentation_loss(logits, torch.full((2, 3, 3), IGNORE))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))
    # only foreground
    logits.grad = None
    fg_only = torch.ones(2, 3, 3, dtype=torch.long)
    assert segmentation_loss(logits, fg_only).item() == pytest.approx(
        0.5 * F.cross_entropy(logits, fg_only).item(), rel=1e-6
    )


def test_segmentation_loss_upsamples_logits_and_checks_labels():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 3, 2, 2, generator=gen)
    labels = torch.randint(0, 3, (1, 8, 8), generator=gen)
    up = F.interpolate(logits, size=(8, 8), mode="bilinear", align_corners=False)
    assert segmentation_loss(logits, labels).item() == pytest.approx(segmentation_loss(up, labels).item(), rel=1e-6)
    with pytest.raises(ValueError, match="0..2"):
        segmentation_loss(logits, torch.full((1, 8, 8), 3))


def test_fused_pseudo_labels_feed_the_seg_halves():
    # docs/mcc.md §6 step 6 on hand-made label_H / label_L, then the halves count the right pixels
    label_h = torch.tensor([[[2, 0, 0, IGNORE]]])
    label_l = torch.tensor([[[2, 0, 1, IGNORE]]])
    fused = fuse_two_threshold_labels(label_h, label_l)
    assert fused.tolist() == [[[2, 0, IGNORE, IGNORE]]]
    logits = torch.tensor([[0.0, 1.0, 3.0, 0.0], [0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0]]).reshape(1, 3, 1, 4)
    ce_bg, ce_fg = segmentation_loss_halves(logits, fused)
    assert ce_bg.item() == pytest.approx(_ce(logits[0, :, 0, 1], 0), rel=1e-6)
    assert ce_fg.item() == pytest.approx(_ce(logits[0, :, 0, 0], 2), rel=1e-6)
