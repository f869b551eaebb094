"""SPML contrastive losses: hand-computed values in both numerical modes, relations' positive sets, chunking."""
import math

import pytest
import torch
import torch.nn.functional as F

from wss_d2.methods.spml.losses import (
    SPML_SETTINGS,
    SPMLCandidates,
    feature_affinity_label_sets,
    group_mean,
    image_similarity_loss,
    pixel_segment_contrastive_loss,
    semantic_annotation_loss,
    semantic_cooccurrence_loss,
    spml_total_loss,
)
from wss_d2.methods.spml.segments import form_segments, image_tags

E = torch.tensor


def _loss(f, own, protos, kappa, keys_p, keys_s, exact):
    return pixel_segment_contrastive_loss(
        E(f), E(own), E(protos), kappa, pixel_keys=E(keys_p), segment_keys=E(keys_s), exact=exact
    )


@pytest.mark.parametrize("exact", [False, True])
def test_own_segment_excluded_when_other_positive(exact):
    # own (1,0) and another positive (0,1) share key 0; (-1,0) is a negative: own term in neither sum.
    loss = _loss([[1.0, 0.0]], [0], [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], 1.0, [0], [0, 0, 1], exact)
    assert loss.item() == pytest.approx(-math.log(1.0 / (1.0 + math.exp(-1.0))), abs=1e-6)


@pytest.mark.parametrize("exact", [False, True])
def test_fallback_to_own_segment(exact):
    # no other positive: numerator = own term; κ = 2.
    loss = _loss([[1.0, 0.0]], [0], [[1.0, 0.0], [0.0, 1.0]], 2.0, [3], [3, 4], exact)
    assert loss.item() == pytest.approx(-math.log(math.exp(2) / (math.exp(2) + 1.0)), abs=1e-6)


def test_modes_differ_when_other_positive_is_below_fp32_rounding():
    # κ = 16: own term e^16, the other positive e^-16, one negative e^0.
    args = ([[1.0, 0.0]], [0], [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], 16.0, [0], [0, 0, 1])
    official = _loss(*args, exact=False).item()
    exact = _loss(*args, exact=True).item()
    # official: (e^16 + e^-16) - e^16 == 0 in fp32, so the own term is the numerator
    assert official == pytest.approx(math.log1p(math.exp(-16.0)), abs=1e-6)
    # exact: numerator e^-16
    assert exact == pytest.approx(16.0 + math.log1p(math.exp(-16.0)), abs=1e-4)


@pytest.mark.parametrize("exact", [False, True])
def test_own_segment_negative_when_image_has_no_tag(exact):
    # (O) for an image without foreground tag: own segment is a negative and the numerator.
    f = E([[1.0, 0.0]])
    protos = E([[1.0, 0.0], [0.0, 1.0]])
    tags = E([[0.0, 0.0], [1.0, 0.0]])
    loss = pixel_segment_contrastive_loss(f, E([0]), protos, 1.0, pixel_sets=tags[:1], segment_sets=tags, exact=exact)
    e = math.e
    assert loss.item() == pytest.approx(math.log(e + e + 1.0) - 1.0, abs=1e-6)


def _reference(f, own, protos, kappa, positive):
    """Per-pixel loss from explicit candidate lists; positive(i, s) in {True, False, None (not a candidate)}."""
    out = []
    for i in range(f.shape[0]):
        a = torch.exp(kappa * protos.double() @ f[i].double())
        pos = [s for s in range(protos.shape[0]) if positive(i, s) is True and s != own[i]]
        neg = [s for s in range(protos.shape[0]) if positive(i, s) is False]
        num = a[pos].sum() if pos else a[own[i]]
        out.append(-torch.log(num / (num + a[neg].sum())))
    return torch.stack(out).float()


def _batch(seed=0, b=3, d=5, h=6, w=6, k=4):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(b, d, h, w, generator=g)
    labels = torch.randint(0, k + 1, (b, h, w), generator=g)  # k = unlabelled
    labels[:, 0, 0] = 255
    regions = torch.randint(0, 3, (b, h, w), generator=g)
    tags = E([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0]])[:b]
    return emb, labels, regions, tags


def _segments(seed=0, **kw):
    emb, labels, regions, tags = _batch(seed, **kw)
    return form_segments(emb, labels, 4, regions=regions, tags=tags, grid=(2, 2), iterations=3)


@pytest.mark.parametrize("exact", [False, True])
def test_relation_V_same_region_same_image(exact):
    s = _segments()
    per = pixel_segment_contrastive_loss(
        s.pixel_cluster_feature, s.pixel_segment, s.cluster_prototypes, 16.0,
        pixel_keys=s.pixel_region, segment_keys=s.segment_region,
        pixel_groups=s.pixel_image, segment_groups=s.segment_image, exact=exact,
    )

    def positive(i, j):
        if s.segment_image[j] != s.pixel_image[i]:
            return None
        return bool(s.segment_region[j] == s.pixel_region[i])

    if exact:  # the exact form is the formula
        ref = _reference(s.pixel_cluster_feature, s.pixel_segment, s.cluster_prototypes, 16.0, positive)
        assert torch.allclose(per, ref, atol=1e-4)
    v = image_similarity_loss(s, 16.0, exact=exact)
    assert v.item() == pytest.approx(group_mean(per, s.pixel_image).item(), rel=1e-6)
    means = [per[s.pixel_image == b].mean() for b in range(3)]
    assert v.item() == pytest.approx(torch.stack(means).mean().item(), rel=1e-5)


def test_relation_C_labelled_only_same_label():
    s = _segments()
    cand = SPMLCandidates(s.prototypes, s.segment_label, s.segment_image, s.segment_tags)
    per = semantic_annotation_loss(s.pixel_embedding, s.pixel_label, s.pixel_segment, cand, 4, 6.0, exact=True,
                                   return_per_pixel=True)
    q = s.pixel_label < 4
    assert per.shape[0] == int(q.sum())

    def positive(i, j):
        if s.segment_label[j] >= 4:
            return None  # unlabelled segments are not candidates
        return bool(s.segment_label[j] == s.pixel_label[q][i])

    ref = _reference(s.pixel_embedding[q], s.pixel_segment[q], s.prototypes, 6.0, positive)
    assert torch.allclose(per, ref, atol=1e-5)
    official = semantic_annotation_loss(s.pixel_embedding, s.pixel_label, s.pixel_segment, cand, 4, 6.0,
                                        return_per_pixel=True)
    assert torch.allclose(official, per, atol=1e-4)  # κ = 6: both modes agree


def test_relation_O_tag_cooccurrence():
    s = _segments()
    cand = SPMLCandidates(s.prototypes, s.segment_label, s.segment_image, s.segment_tags)
    pixel_tags = s.segment_tags[s.pixel_segment]
    per = semantic_cooccurrence_loss(s.pixel_embedding, pixel_tags, s.pixel_segment, cand, 8.0, exact=True,
                                     return_per_pixel=True)
    tags = _batch()[3]
    share = (tags @ tags.t()) > 0  # images 0-2 share a tag, 1-2 share, 0-1 do not

    assert share.tolist() == [[True, False, True], [False, True, True], [True, True, True]]

    def positive(i, j):
        return bool(share[s.pixel_image[i], s.segment_image[j]])

    ref = _reference(s.pixel_embedding, s.pixel_segment, s.prototypes, 8.0, positive)
    assert torch.allclose(per, ref, atol=1e-5)
    assert per.shape[0] == s.pixel_embedding.shape[0]  # unlabelled pixels included


def test_relation_A_label_sets():
    protos = F.normalize(E([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [1.0, 0.01]]), dim=1)
    labels = E([2, 5, 5, 5])  # K = 5: only segment 0 is labelled
    images = E([0, 0, 0, 1])
    sets = feature_affinity_label_sets(protos, labels, images, 5, 0.95)
    assert sets[0].tolist() == [0, 0, 1, 0, 0]  # matches itself
    assert sets[1].tolist() == [0, 0, 1, 0, 0]  # cos 0.995 with segment 0 of its image
    assert sets[2].tolist() == [1, 1, 1, 1, 1]  # too far: wildcard
    assert sets[3].tolist() == [1, 1, 1, 1, 1]  # the labelled neighbour is in another image


@pytest.mark.parametrize("exact", [False, True])
def test_chunking_and_checkpoint_same_values_and_gradients(exact):
    emb, labels, regions, tags = _batch(1)
    results = []
    for chunk in (7, 100000):
        e = emb.clone().requires_grad_(True)
        s = form_segments(e, labels, 4, regions=regions, tags=tags, grid=(2, 2), iterations=3)
        cand = SPMLCandidates(s.prototypes, s.segment_label, s.segment_image, s.segment_tags)
        loss = semantic_cooccurrence_loss(s.pixel_embedding, s.segment_tags[s.pixel_segment], s.pixel_segment, cand,
                                          8.0, exact=exact, chunk_size=chunk)
        loss = loss + image_similarity_loss(s, 16.0, exact=exact, chunk_size=chunk)
        loss.backward()
        results.append((loss.detach(), e.grad))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-6)
    assert torch.allclose(results[0][1], results[1][1], atol=1e-6)
    assert torch.isfinite(results[0][1]).all()


def test_settings_table_and_total_loss():
    assert SPML_SETTINGS["voc_scribbles"]["sem_occ"] == dict(kappa=12.0, weight=0.5)
    assert SPML_SETTINGS["voc_points"]["sem_ann"]["weight"] == 0.1
    assert SPML_SETTINGS["densepose_points"]["sem_occ"] is None
    assert all(v["feat_aff"] is None for v in SPML_SETTINGS.values())  # (A) off as released
    assert all(v["img_sim"] == dict(kappa=16.0, weight=0.1) for v in SPML_SETTINGS.values())
    s = _segments()
    cand = SPMLCandidates(s.prototypes, s.segment_label, s.segment_image, s.segment_tags, s.prototypes)
    ce = torch.tensor(0.5)
    terms = spml_total_loss(s, cand, 0, 4, SPML_SETTINGS["voc_tags"], ce_loss=ce)
    assert set(terms) == {"loss_sem_ann", "loss_sem_occ", "loss_img_sim"}
    c = semantic_annotation_loss(s.pixel_embedding, s.pixel_label, s.pixel_segment, cand, 4, 6.0)
    assert terms["loss_sem_ann"].item() == pytest.approx(0.3 * (c.item() + 0.5), rel=1e-6)
    dp = spml_total_loss(s, cand, 0, 4, SPML_SETTINGS["densepose_points"], feature_affinity=True)
    assert set(dp) == {"loss_sem_ann", "loss_img_sim", "loss_feat_aff"}


def test_image_tags_foreground_only():
    labels = E([[[0, 3, 21], [255, 3, 5]]])
    t = image_tags(labels, 21)
    assert t.shape == (1, 20)
    assert t[0].nonzero().flatten().tolist() == [2, 4]  # classes 3 and 5


def test_positive_sets_on_hand_made_batch():
    from wss_d2.methods.spml.losses import relation_masks

    # segments: (image, region, label); K = 3 so label 3 is unlabelled
    seg_image = E([0, 0, 0, 1, 1, 2])
    seg_region = E([0, 0, 1, 0, 0, 0])
    seg_label = E([1, 3, 1, 2, 1, 0])
    img_tags = E([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])  # image 2 has no foreground tag
    seg_tags = img_tags[seg_image]
    own = E([0, 3, 5])  # pixels in segments 0, 3 and 5

    def sets(mask):
        return [set(row.nonzero().flatten().tolist()) for row in mask]

    # (V): same region, same image; other images are not candidates
    pos, neg, _ = relation_masks(own, seg_region[own], seg_region, pixel_groups=seg_image[own], segment_groups=seg_image)
    assert sets(pos) == [{1}, {4}, set()] and sets(neg) == [{2}, set(), set()]
    # (C): labelled candidates only (0, 2, 3, 4, 5 -> columns 0..4); same label
    lab = E([0, 2, 3, 4, 5])
    pos, neg, _ = relation_masks(E([0, 2]), seg_label[own[:2]], seg_label[lab])
    # the pixel of segment 3 (label 2, column 2) has no other positive: the loss falls back to its own
    assert sets(pos) == [{1, 3}, set()] and sets(neg) == [{2, 4}, {0, 1, 3, 4}]
    # (O): images share a foreground tag; image 2 has none: every segment a negative, its own included
    pos, neg, _ = relation_masks(own, pixel_sets=seg_tags[own], segment_sets=seg_tags)
    assert sets(pos) == [{1, 2, 3, 4}, {0, 1, 2, 4}, set()]
    assert sets(neg) == [{5}, {5}, {0, 1, 2, 3, 4, 5}]
