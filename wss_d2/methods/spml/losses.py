"""
SPML's pixel-to-segment contrastive losses.

Generic loss (`pixel_segment_contrastive_loss`): query pixels i with unit features f_i and own segment
s(i), candidate segments s with unit prototypes μ_s, a binary relation R(i, s), a concentration κ:

    a_is = exp(κ f_i·μ_s),  P_i = {s : R(i,s) = 1, s != s(i)},  N_i = {s : R(i,s) = 0}
    num_i = Σ_{P_i} a_is if P_i is not empty, else a_i,s(i)
    loss_i = -log(num_i / (num_i + Σ_{N_i} a_is))

The own segment is in neither sum when another positive exists. When R(i, s(i)) = 0 (an image without
foreground tag under (O)) the own segment is a negative and also the numerator, as the official code does.

Two numerical modes:
- default (`exact=False`), as the official code: in fp32 and without max-shift, num = Σ_{R=1} a - a_own,
  and the own term is used whenever num <= 0. When the other positives are tiny next to the own term the
  difference is fp32 rounding noise (exactly 0 below a ratio of about 6e-8): the fallback can fire
  although other positives exist, and the value then depends on the summation order (the layout of the
  candidate row). (V) at κ = 16 is affected; (C) at κ = 6 and (O) at κ = 8 practically not.
- `exact=True`: the formula above with logsumexp over the masked logits (the fallback only when P_i is
  empty).

Relations (the candidate sets are built by the caller; see `SPMLCandidates`):
- (V) `image_similarity_loss`: same over-segment region, same image; candidates are the segments of the
  pixel's own image; VOC uses [ê ⊕ xy] features and their prototypes, DensePose plain ê. Per-image mean
  over pixels, then mean over images.
- (C) `semantic_annotation_loss`: same label, across the global batch and the memory; labelled pixels and
  labelled segments only.
- (O) `semantic_cooccurrence_loss`: the two images share a foreground tag; all valid pixels, all segments.
- (A) `feature_affinity_loss` with `feature_affinity_label_sets`: each segment takes the label of its most
  similar labelled segment of the same image (cosine of the affinity prototypes >= 0.95) or else the set of
  all classes; R = the label sets intersect. Configured but never applied by the released code: off by
  default in every setting of `SPML_SETTINGS`.

Memory: the pixel x candidate similarity is computed `chunk_size` pixels at a time, each chunk under
activation checkpointing, so only one chunk's [c, S] intermediates live at once (in the forward, and again
when the chunk is recomputed in the backward). Measured on CPU (peak RSS over a forward + backward), one
chunk costs about 22 bytes per (pixel, candidate) pair in the default mode (fp32 logits, exp, gradients,
masked products and bool masks) and about 35 bytes in the exact mode (masked logit copies for logsumexp).
A batch of 16 x 512² crops at D = 64 gives 16 x 128² = 262,144 stride-4 pixels (67 MB of fp32 ê, 69 MB of
[ê ⊕ xy]; on 4 processes 65,536 each); with S = 10,000 candidates (16 images x ~200 segments x (1 batch +
2 memory batches)) and the default chunk_size = 4096 the loss's own peak is 4096 x 10,000 x 22 B ≈ 0.9 GB
(exact mode ≈ 1.4 GB) on top of those inputs and the [P] per-pixel outputs, whatever the number of
pixels; unchunked it would be 262,144 x 10,000 x 22 B ≈ 58 GB.
"""
from dataclasses import dataclass
from functools import partial
from typing import Dict, Optional

import torch
from torch.utils.checkpoint import checkpoint

DEFAULT_CHUNK_SIZE = 4096
_MASKED = -1.0e4  # a logit whose exp is 0 in fp32; finite so that gradients stay finite

# Per-setting concentrations κ and weights w (official stage-A scripts). The total loss is
# w_C·(CE + L_C) + w_O·L_O + w_V·L_V (+ w_A·L_A). "img_sim_features": the features of (V), "cluster" =
# [ê ⊕ xy] (and their prototypes), "embedding" = ê. None = term off.
SPML_SETTINGS: Dict[str, Dict] = {
    "voc_tags": dict(
        sem_ann=dict(kappa=6.0, weight=0.3), sem_occ=dict(kappa=8.0, weight=0.3),
        img_sim=dict(kappa=16.0, weight=0.1), feat_aff=None, img_sim_features="cluster",
        grid_train=6, grid_test=12, memory_size=2, embed_dim=64,
    ),
    "voc_boxes": dict(
        sem_ann=dict(kappa=6.0, weight=0.3), sem_occ=dict(kappa=8.0, weight=0.3),
        img_sim=dict(kappa=16.0, weight=0.1), feat_aff=None, img_sim_features="cluster",
        grid_train=6, grid_test=12, memory_size=2, embed_dim=64,
    ),
    "voc_scribbles": dict(
        sem_ann=dict(kappa=6.0, weight=1.0), sem_occ=dict(kappa=12.0, weight=0.5),
        img_sim=dict(kappa=16.0, weight=0.1), feat_aff=None, img_sim_features="cluster",
        grid_train=6, grid_test=12, memory_size=2, embed_dim=64,
    ),
    "voc_points": dict(
        sem_ann=dict(kappa=6.0, weight=0.1), sem_occ=dict(kappa=8.0, weight=0.1),
        img_sim=dict(kappa=16.0, weight=0.1), feat_aff=None, img_sim_features="cluster",
        grid_train=6, grid_test=12, memory_size=2, embed_dim=64,
    ),
    # (A) is configured (κ 12, w 0.5, threshold 0.95, affinity scale 0.1) but the released code never
    # applies it; `feat_aff_paper` holds those values for the paper variant.
    "densepose_points": dict(
        sem_ann=dict(kappa=6.0, weight=1.0), sem_occ=None,
        img_sim=dict(kappa=16.0, weight=0.1), feat_aff=None, img_sim_features="embedding",
        feat_aff_paper=dict(kappa=12.0, weight=0.5, threshold=0.95, aff_scale=0.1),
        grid_train=12, grid_test=24, memory_size=0, embed_dim=32,
    ),
}


def _relation(pixel_keys, segment_keys, pixel_sets, segment_sets):
    if pixel_keys is not None:
        return pixel_keys[:, None] == segment_keys[None, :]
    return (pixel_sets.float() @ segment_sets.float().t()) > 0


def relation_masks(own, pixel_keys=None, segment_keys=None, pixel_sets=None, segment_sets=None,
                   pixel_groups=None, segment_groups=None):
    """
    Bool [P, S] (positives P_i without the own segment, negatives N_i) of the relation: key equality or
    set overlap, restricted to the pixel's group when groups are given. R(i, s(i)) = 0 puts the own
    segment in N_i.
    """
    rel = _relation(pixel_keys, segment_keys, pixel_sets, segment_sets)
    if pixel_groups is not None:
        cand = pixel_groups[:, None] == segment_groups[None, :]
        neg = cand & ~rel
        rel = rel & cand
    else:
        neg = ~rel
    own_mask = torch.zeros_like(rel)
    own_mask.scatter_(1, own[:, None], True)
    return rel & ~own_mask, neg, rel


def _chunk_losses(features, own, prototypes, pixel_keys, segment_keys, pixel_sets, segment_sets,
                  pixel_groups, segment_groups, *, kappa, exact):
    logits = kappa * (features.float() @ prototypes.float().t())  # [c, S]
    pos, neg, rel = relation_masks(own, pixel_keys, segment_keys, pixel_sets, segment_sets, pixel_groups, segment_groups)
    own_logit = logits.gather(1, own[:, None])[:, 0]
    if exact:
        lpos = torch.logsumexp(logits.masked_fill(~pos, _MASKED), dim=1)
        lnum = torch.where(pos.any(dim=1), lpos, own_logit)
        lneg = torch.logsumexp(logits.masked_fill(~neg, _MASKED), dim=1)
        lneg = torch.where(neg.any(dim=1), lneg, torch.full_like(lneg, _MASKED))
        return torch.logaddexp(lnum, lneg) - lnum
    e = torch.exp(logits)
    own_e = torch.exp(own_logit)
    num = (e * rel).sum(dim=1) - own_e
    num = torch.where(num > 0, num, own_e)
    den = num + (e * neg).sum(dim=1)
    return torch.log(den) - torch.log(num)


def pixel_segment_contrastive_loss(
    features: torch.Tensor,
    own_segment: torch.Tensor,
    prototypes: torch.Tensor,
    kappa: float,
    *,
    pixel_keys: Optional[torch.Tensor] = None,
    segment_keys: Optional[torch.Tensor] = None,
    pixel_sets: Optional[torch.Tensor] = None,
    segment_sets: Optional[torch.Tensor] = None,
    pixel_groups: Optional[torch.Tensor] = None,
    segment_groups: Optional[torch.Tensor] = None,
    exact: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    use_checkpoint: bool = True,
) -> torch.Tensor:
    """
    Per-pixel losses [P] (fp32). features [P, C] unit, own_segment [P] indices into prototypes [S, C].
    The relation is either key equality (pixel_keys [P] vs segment_keys [S]) or set overlap
    (pixel_sets [P, T] · segment_sets [S, T] > 0). With groups (pixel_groups [P], segment_groups [S]) only
    the candidates of the pixel's group take part (positive or negative).
    """
    if (pixel_keys is None) == (pixel_sets is None):
        raise ValueError("give exactly one of pixel_keys/segment_keys or pixel_sets/segment_sets")
    n = features.shape[0]
    if n == 0:
        return features.new_zeros(0, dtype=torch.float32)
    fn = partial(_chunk_losses, kappa=float(kappa), exact=exact)
    grad = torch.is_grad_enabled() and (features.requires_grad or prototypes.requires_grad)
    out = []
    for start in range(0, n, chunk_size):
        sl = slice(start, start + chunk_size)
        args = (
            features[sl], own_segment[sl], prototypes,
            None if pixel_keys is None else pixel_keys[sl], segment_keys,
            None if pixel_sets is None else pixel_sets[sl], segment_sets,
            None if pixel_groups is None else pixel_groups[sl], segment_groups,
        )
        if grad and use_checkpoint:
            out.append(checkpoint(fn, *args, use_reentrant=False))
        else:
            out.append(fn(*args))
    return torch.cat(out)


def group_mean(values: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Mean over groups of the per-group means of values [P] (groups [P] long); groups without values skipped."""
    if values.numel() == 0:
        return values.sum()
    num = int(groups.max().item()) + 1
    sums = values.new_zeros(num).index_add(0, groups, values)
    counts = torch.bincount(groups, minlength=num).to(values.dtype)
    present = counts > 0
    return (sums[present] / counts[present]).mean()


def _mean(values: torch.Tensor, *anchors: torch.Tensor) -> torch.Tensor:
    # An empty query set (e.g. a crop without labelled pixel) gives 0 still connected to the pixel
    # features and to the gathered prototypes, so that every process runs the gather's backward.
    if values.numel() == 0:
        return sum(a.sum() for a in anchors) * 0.0
    return values.mean()


@dataclass
class SPMLCandidates:
    """Candidate segments of (C), (O), (A): the gathered global batch followed by the memory."""
    prototypes: torch.Tensor          # [S, D]
    labels: torch.Tensor              # [S] long
    images: torch.Tensor              # [S] long, globally unique image ids
    tags: Optional[torch.Tensor] = None       # [S, T]
    aff_prototypes: Optional[torch.Tensor] = None  # [S, C] affinity prototypes for (A)

    @classmethod
    def from_fields(cls, fields: Dict[str, torch.Tensor]) -> "SPMLCandidates":
        """From `Segments.fields()`-style dicts (gathered, with the memory appended)."""
        return cls(fields["prototypes"], fields["labels"], fields["images"], fields.get("tags"),
                   fields.get("aff_prototypes"))


def image_similarity_loss(segments, kappa: float = 16.0, use_cluster_features: bool = True,
                          exact: bool = False, chunk_size: int = DEFAULT_CHUNK_SIZE) -> torch.Tensor:
    """(V) on this process's own segments (never the memory, never other processes)."""
    if use_cluster_features:
        f, protos = segments.pixel_cluster_feature, segments.cluster_prototypes
    else:
        f, protos = segments.pixel_embedding, segments.prototypes
    per = pixel_segment_contrastive_loss(
        f, segments.pixel_segment, protos, kappa,
        pixel_keys=segments.pixel_region, segment_keys=segments.segment_region,
        pixel_groups=segments.pixel_image, segment_groups=segments.segment_image,
        exact=exact, chunk_size=chunk_size,
    )
    if per.numel() == 0:
        return f.sum() * 0.0
    return group_mean(per, segments.pixel_image)


def semantic_annotation_loss(pixel_features, pixel_labels, own_index, candidates: SPMLCandidates, num_classes: int,
                             kappa: float = 6.0, exact: bool = False, chunk_size: int = DEFAULT_CHUNK_SIZE,
                             return_per_pixel: bool = False):
    """(C): labelled pixels against labelled candidates, positive = same label."""
    q = pixel_labels < num_classes
    s = candidates.labels < num_classes
    remap = torch.cumsum(s.long(), 0) - 1
    per = pixel_segment_contrastive_loss(
        pixel_features[q], remap[own_index[q]], candidates.prototypes[s], kappa,
        pixel_keys=pixel_labels[q], segment_keys=candidates.labels[s], exact=exact, chunk_size=chunk_size,
    )
    if return_per_pixel:
        return per
    return _mean(per, pixel_features, candidates.prototypes)


def semantic_cooccurrence_loss(pixel_features, pixel_tags, own_index, candidates: SPMLCandidates,
                               kappa: float = 8.0, exact: bool = False, chunk_size: int = DEFAULT_CHUNK_SIZE,
                               return_per_pixel: bool = False):
    """(O): all valid pixels against all candidates, positive = the images share a foreground tag."""
    per = pixel_segment_contrastive_loss(
        pixel_features, own_index, candidates.prototypes, kappa,
        pixel_sets=pixel_tags, segment_sets=candidates.tags, exact=exact, chunk_size=chunk_size,
    )
    if return_per_pixel:
        return per
    return _mean(per, pixel_features, candidates.prototypes)


@torch.no_grad()
def feature_affinity_label_sets(aff_prototypes, labels, images, num_classes: int, threshold: float = 0.95,
                                chunk_size: int = DEFAULT_CHUNK_SIZE) -> torch.Tensor:
    """
    [S, K] label sets of (A): the label of the most similar labelled segment of the same image (cosine of
    the affinity prototypes, top-1) when the cosine is >= threshold, else all K classes. A labelled segment
    matches itself, so it keeps its label.
    """
    s = aff_prototypes.shape[0]
    labelled = labels < num_classes
    out = torch.ones(s, num_classes, device=aff_prototypes.device)
    protos = aff_prototypes.float()
    for start in range(0, s, chunk_size):
        sl = slice(start, start + chunk_size)
        sim = protos[sl] @ protos.t()
        ok = (images[sl, None] == images[None, :]) & labelled[None, :]
        sim = sim.masked_fill(~ok, -2.0)
        best, idx = sim.max(dim=1)
        hit = best >= threshold
        onehot = torch.zeros(idx.shape[0], num_classes, device=out.device)
        onehot.scatter_(1, labels[idx].clamp(max=num_classes - 1)[:, None], 1.0)
        out[sl] = torch.where(hit[:, None], onehot, out[sl])
    return out


def feature_affinity_loss(pixel_features, own_index, candidates: SPMLCandidates, label_sets: torch.Tensor,
                          kappa: float = 12.0, exact: bool = False, chunk_size: int = DEFAULT_CHUNK_SIZE,
                          return_per_pixel: bool = False):
    """(A): all valid pixels, all candidates, R = label sets intersect; a pixel has its segment's set."""
    per = pixel_segment_contrastive_loss(
        pixel_features, own_index, candidates.prototypes, kappa,
        pixel_sets=label_sets[own_index], segment_sets=label_sets, exact=exact, chunk_size=chunk_size,
    )
    if return_per_pixel:
        return per
    return _mean(per, pixel_features, candidates.prototypes)


def spml_total_loss(
    segments,
    candidates: SPMLCandidates,
    segment_offset: int,
    num_classes: int,
    setting: Dict,
    ce_loss: Optional[torch.Tensor] = None,
    feature_affinity: bool = False,
    exact: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Dict[str, torch.Tensor]:
    """
    Weighted terms of one process: {"loss_sem_ann": w_C·(CE + L_C), "loss_sem_occ": w_O·L_O,
    "loss_img_sim": w_V·L_V, "loss_feat_aff": w_A·L_A}. `segments` are this process's, `candidates` the
    gathered batch + memory, `segment_offset` the index of this process's first segment in them.
    `feature_affinity=True` applies (A) with the setting's `feat_aff` (or `feat_aff_paper`) values;
    candidates.aff_prototypes must then be set.
    """
    own = segments.pixel_segment + segment_offset
    f = segments.pixel_embedding
    losses = {}
    if setting.get("sem_ann"):
        c = setting["sem_ann"]
        term = semantic_annotation_loss(f, segments.pixel_label, own, candidates, num_classes, c["kappa"], exact, chunk_size)
        if ce_loss is not None:
            term = term + ce_loss
        losses["loss_sem_ann"] = c["weight"] * term
    if setting.get("sem_occ"):
        c = setting["sem_occ"]
        pixel_tags = candidates.tags[own]
        losses["loss_sem_occ"] = c["weight"] * semantic_cooccurrence_loss(f, pixel_tags, own, candidates, c["kappa"], exact, chunk_size)
    if setting.get("img_sim"):
        c = setting["img_sim"]
        use_cluster = setting.get("img_sim_features", "cluster") == "cluster"
        losses["loss_img_sim"] = c["weight"] * image_similarity_loss(segments, c["kappa"], use_cluster, exact, chunk_size)
    if feature_affinity:
        c = setting.get("feat_aff") or setting.get("feat_aff_paper")
        if c is None or candidates.aff_prototypes is None:
            raise ValueError("feature affinity needs the setting's feat_aff values and candidates.aff_prototypes")
        sets = feature_affinity_label_sets(candidates.aff_prototypes, candidates.labels, candidates.images,
                                           num_classes, c.get("threshold", 0.95), chunk_size)
        losses["loss_feat_aff"] = c["weight"] * feature_affinity_loss(f, own, candidates, sets, c["kappa"], exact, chunk_size)
    return losses
