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

Speed and memory: the pixel x candidate similarity is computed `chunk_size` pixels at a time with an
analytic backward (`_ContrastiveChunk`): the forward of a chunk also yields W = d loss_i / d logit_is
(4 bytes per (pixel, candidate) pair), and the backward is two matmuls, W·μ and Wᵀ·f. W of every chunk
is kept for the backward while all of them fit in `keep_bytes` (P x S x 4 <= DEFAULT_KEEP_BYTES = 1 GiB);
beyond, each chunk's W is recomputed in the backward (as activation checkpointing did), so only one
chunk's [c, S] intermediates live at once. The relation masks are applied as 0/1 fp32 rows built on the
few distinct keys / tag sets / images of a chunk (one broadcast product per run of equal values, or a
row gather), so the masked sums, the fallback test and thus the losses are those of the dense-mask
formulas bit for bit. The memory-bank candidates (`SPMLCandidates.num_current`) get no prototype
gradient. Measured on CPU (peak RSS over a forward + backward of one 4096 x 10,000 chunk, recompute
mode), one chunk costs about 8 bytes per pair ((O), (C)) to 12 bytes ((V), with the image groups) in
the default mode and about 25 bytes in the exact mode (bool masks, masked logit copies for logsumexp).
A batch of 16 x 512² crops at D = 64 gives 16 x 128² = 262,144 stride-4 pixels (67 MB of fp32 ê, 69 MB
of [ê ⊕ xy]; on 4 processes 65,536 each); with S = 10,000 candidates (16 images x ~200 segments x
(1 batch + 2 memory batches)) the kept W would need 262,144 x 10,000 x 4 B ≈ 10.5 GB > 1 GiB, so the
chunks are recomputed and with the default chunk_size = 4096 the loss's own peak is 4096 x 10,000 x
12 B ≈ 0.5 GB (exact mode ≈ 1.0 GB) on top of those inputs and the [P] per-pixel outputs, whatever the
number of pixels (at most 1 GiB + one chunk when W is kept); unchunked the default mode would need
262,144 x 10,000 x 12 B ≈ 31 GB.
"""
import math
from dataclasses import dataclass
from typing import Dict, Optional

import torch

DEFAULT_CHUNK_SIZE = 4096
# the derivative matrices of all chunks are kept for the backward up to this many bytes (else recomputed)
DEFAULT_KEEP_BYTES = 2**30
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
    # set overlap: a chunk holds few distinct pixel sets (one per image), so one small [U, S] product
    # and a row gather instead of a [c, T] x [T, S] product
    uniq, inv = torch.unique(pixel_sets, dim=0, return_inverse=True)
    return ((uniq.float() @ segment_sets.float().t()) > 0)[inv]


def _rel_neg(pixel_keys, segment_keys, pixel_sets, segment_sets, pixel_groups, segment_groups):
    """Bool [c, S] relation R (restricted to the group) and negatives N."""
    if pixel_groups is None:
        rel = _relation(pixel_keys, segment_keys, pixel_sets, segment_sets)
        return rel, ~rel
    cand = pixel_groups[:, None] == segment_groups[None, :]
    if pixel_keys is not None:
        # (key, group) equality as one integer comparison
        span = torch.maximum(pixel_keys.max(), segment_keys.max()) - torch.minimum(pixel_keys.min(), segment_keys.min()) + 1
        rel = (pixel_groups * span + pixel_keys)[:, None] == (segment_groups * span + segment_keys)[None, :]
    else:
        rel = _relation(pixel_keys, segment_keys, pixel_sets, segment_sets) & cand
    return rel, cand ^ rel  # rel lies inside cand


def _rows(pixel_values, table_fn):
    """table_fn(distinct pixel values) -> [U, S] float; expanded to the pixels by a row gather."""
    if pixel_values.dim() == 1:
        uniq, inv = torch.unique(pixel_values, return_inverse=True)
    else:
        uniq, inv = torch.unique(pixel_values, dim=0, return_inverse=True)
    return table_fn(uniq).index_select(0, inv)


_MAX_RUNS = 64  # up to this many runs of equal pixel values in a chunk: broadcast per run, no row gather


def _mul_rows(e, pixel_values, table_fn, out=None):
    """
    e [c, S] times the 0/1 fp32 row table_fn(values)[value of pixel i] (e finite, so each product is
    exactly e or 0). Pixels come in (image, y, x) order, so per-image values form few runs: one broadcast
    product per run; otherwise a row gather of the table over the distinct values.
    """
    dim = None if pixel_values.dim() == 1 else 0
    runs, counts = torch.unique_consecutive(pixel_values, return_counts=True, dim=dim)
    if runs.shape[0] <= _MAX_RUNS:
        table = table_fn(runs)
        out = torch.empty_like(e) if out is None else out
        start = 0
        for r, n in enumerate(counts.tolist()):
            torch.mul(e[start:start + n], table[r], out=out[start:start + n])
            start += n
        return out
    uniq, inv = torch.unique(pixel_values, return_inverse=True, dim=dim)
    return torch.mul(e, table_fn(uniq).index_select(0, inv), out=out)


def _masked_sums_operands(e, pixel_keys, segment_keys, pixel_sets, segment_sets, pixel_groups, segment_groups):
    """
    (e·R, e·N) as fp32 [c, S], R restricted to the group, N = the group's candidates outside R; e is
    overwritten. The values are those of e * mask for the bool masks of `relation_masks`, bit for bit.
    """
    if pixel_groups is not None:
        e = _mul_rows(e, pixel_groups, lambda u: (u[:, None] == segment_groups[None, :]).float(), out=e)
    if pixel_keys is not None:
        e_rel = _mul_rows(e, pixel_keys, lambda u: (u[:, None] == segment_keys[None, :]).float())
    else:
        ss = segment_sets.float().t()
        e_rel = _mul_rows(e, pixel_sets, lambda u: ((u.float() @ ss) > 0).float())
    return e_rel, e.sub_(e_rel)  # e·cand - e·R: e·N exactly (R lies inside cand)


def relation_masks(own, pixel_keys=None, segment_keys=None, pixel_sets=None, segment_sets=None,
                   pixel_groups=None, segment_groups=None):
    """
    Bool [P, S] (positives P_i without the own segment, negatives N_i) of the relation: key equality or
    set overlap, restricted to the pixel's group when groups are given. R(i, s(i)) = 0 puts the own
    segment in N_i.
    """
    rel, neg = _rel_neg(pixel_keys, segment_keys, pixel_sets, segment_sets, pixel_groups, segment_groups)
    own_mask = torch.zeros_like(rel)
    own_mask.scatter_(1, own[:, None], True)
    return rel & ~own_mask, neg, rel


@torch.no_grad()
def _chunk_stats(features, own, prototypes, masks, kappa, exact, need_grad=True):
    """
    Per-pixel losses [c] of one chunk and W [c, S] = d loss_i / d logit_is (the logits kappa f·μ), the
    same derivative autograd takes through the formulas below.
    """
    pixel_keys, segment_keys, pixel_sets, segment_sets, pixel_groups, segment_groups = masks
    if math.frexp(kappa)[0] == 0.5:  # a power of two: (kappa f) @ μᵀ is kappa * (f @ μᵀ) exactly
        logits = (features.float() * kappa) @ prototypes.float().t()
    else:
        logits = (features.float() @ prototypes.float().t()).mul_(kappa)  # [c, S]
    if exact:
        rel, neg = _rel_neg(pixel_keys, segment_keys, pixel_sets, segment_sets, pixel_groups, segment_groups)
    own_col = own[:, None]
    own_logit = logits.gather(1, own_col)[:, 0]
    if exact:
        own_mask = torch.zeros_like(rel).scatter_(1, own_col, True)
        pos = rel & ~own_mask
        del own_mask
        masked = logits.masked_fill(~pos, _MASKED)
        lpos = torch.logsumexp(masked, dim=1)
        has_pos = pos.any(dim=1)
        lnum = torch.where(has_pos, lpos, own_logit)
        torch.where(neg, logits, torch.full_like(lpos, _MASKED)[:, None], out=masked)
        lneg_raw = torch.logsumexp(masked, dim=1)
        has_neg = neg.any(dim=1)
        lneg = torch.where(has_neg, lneg_raw, torch.full_like(lneg_raw, _MASKED))
        total = torch.logaddexp(lnum, lneg)
        loss = total - lnum
        d_num = torch.exp(lnum - total) - 1.0     # d loss / d lnum
        d_neg = torch.exp(lneg - total) * has_neg  # d loss / d lneg
        # softmax weights inside each set (zero outside it, as masked_fill's gradient)
        w_pos = torch.where(has_pos, d_num, torch.zeros_like(d_num))
        shift = torch.where(pos, lpos[:, None], lneg_raw[:, None])
        keep = pos | neg
        coef = torch.where(pos, w_pos[:, None], d_neg[:, None])
        w = torch.exp(logits.sub_(shift)).mul_(coef).masked_fill_(~keep, 0.0)
        w.scatter_add_(1, own_col, torch.where(has_pos, torch.zeros_like(d_num), d_num)[:, None])
        return loss, (w if need_grad else None)
    e = logits.exp_()  # in place: the logits are not needed any more
    own_e = torch.exp(own_logit)
    # e·R and e·N hold exactly the values of the official masked products (e is finite, the masks 0/1),
    # so the sums and the fallback test are the official ones, bit for bit
    e_rel, e_neg = _masked_sums_operands(e, *masks)
    del e
    num = e_rel.sum(dim=1) - own_e
    ok = num > 0
    num = torch.where(ok, num, own_e)
    den = num + e_neg.sum(dim=1)
    loss = torch.log(den) - torch.log(num)
    if not need_grad:
        return loss, None
    # d loss / d num = 1/den - 1/num, d loss / d (negative sum) = 1/den; num = Σ_R e - e_own or e_own
    a = 1.0 / den - 1.0 / num
    b = 1.0 / den
    a_ok = torch.where(ok, a, 0.0)
    w = e_rel.mul_(a_ok[:, None]).addcmul_(e_neg, b[:, None])
    w.scatter_add_(1, own_col, (a * own_e * torch.where(ok, -1.0, 1.0))[:, None])
    return loss, w


def _group_blocks(pixel_groups, segment_groups):
    """
    [(r0, r1, c0, c1)] row / column ranges of the groups when the chunk's pixels and the segments are
    both ordered by group (pixels and segments come image by image), else None. W is zero outside them.
    """
    if pixel_groups is None or segment_groups.numel() == 0:
        return None
    if not bool((segment_groups[1:] >= segment_groups[:-1]).all()):
        return None
    runs, counts = torch.unique_consecutive(pixel_groups, return_counts=True)
    if runs.shape[0] > _MAX_RUNS or runs.unique().shape[0] != runs.shape[0]:
        return None
    c0 = torch.searchsorted(segment_groups, runs, right=False).tolist()
    c1 = torch.searchsorted(segment_groups, runs, right=True).tolist()
    out, r0 = [], 0
    for n, a, b in zip(counts.tolist(), c0, c1):
        out.append((r0, r0 + n, a, b))
        r0 += n
    return out


class _ContrastiveChunk(torch.autograd.Function):
    """One chunk's per-pixel losses with an analytic backward: W is kept, or recomputed when not `keep`."""

    @staticmethod
    def forward(ctx, features, prototypes, own, masks, kappa, exact, keep, grad_rows):
        loss, w = _chunk_stats(features, own, prototypes, masks, kappa, exact, keep)
        ctx.save_for_backward(features, prototypes, w if keep else None)
        ctx.rest = (own, masks, kappa, exact, grad_rows)
        ctx.blocks = _group_blocks(masks[4], masks[5])
        return loss

    @staticmethod
    def backward(ctx, grad):
        features, prototypes, w = ctx.saved_tensors
        own, masks, kappa, exact, grad_rows = ctx.rest
        if w is None:
            _, w = _chunk_stats(features, own, prototypes, masks, kappa, exact)
        gl = w.mul_(grad.float()[:, None] * kappa)
        gf = gp = None
        if ctx.blocks is not None:  # block-diagonal W (one block per image): skip the zero blocks
            f, p = features.float(), prototypes.float()
            gf = f.new_zeros(f.shape) if ctx.needs_input_grad[0] else None
            gp = p.new_zeros(p.shape) if ctx.needs_input_grad[1] else None
            for r0, r1, c0, c1 in ctx.blocks:
                blk = gl[r0:r1, c0:c1]
                if gf is not None:
                    gf[r0:r1] = blk @ p[c0:c1]
                if gp is not None:
                    gp[c0:c1] += blk.t() @ f[r0:r1]
            if gp is not None and grad_rows is not None:
                gp[grad_rows:] = 0.0
            return (None if gf is None else gf.to(features.dtype), None if gp is None else gp.to(prototypes.dtype),
                    None, None, None, None, None, None)
        if ctx.needs_input_grad[0]:
            gf = (gl @ prototypes.float()).to(features.dtype)
        if ctx.needs_input_grad[1]:
            if grad_rows is None or grad_rows >= prototypes.shape[0]:
                gp = (gl.t() @ features.float()).to(prototypes.dtype)
            else:  # the rows past grad_rows (the detached memory bank) would drop their gradient anyway
                gp = prototypes.new_zeros(prototypes.shape)
                gp[:grad_rows] = gl[:, :grad_rows].t() @ features.float()
        return gf, gp, None, None, None, None, None, None


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
    keep_bytes: int = DEFAULT_KEEP_BYTES,
    grad_rows: Optional[int] = None,
) -> torch.Tensor:
    """
    Per-pixel losses [P] (fp32). features [P, C] unit, own_segment [P] indices into prototypes [S, C].
    The relation is either key equality (pixel_keys [P] vs segment_keys [S]) or set overlap
    (pixel_sets [P, T] · segment_sets [S, T] > 0). With groups (pixel_groups [P], segment_groups [S]) only
    the candidates of the pixel's group take part (positive or negative).
    The backward is analytic: each chunk keeps its fp32 [c, S] derivative matrix (4 bytes per pair) when
    all chunks together fit in `keep_bytes` (P x S x 4 <= keep_bytes, default 1 GiB); otherwise each
    chunk's matrix is recomputed in the backward, so only one chunk's intermediates live at once.
    `use_checkpoint=False` always keeps them. `grad_rows`: only prototypes[:grad_rows] get a gradient
    (the rest, the detached memory bank, get zeros); None = all.
    """
    if (pixel_keys is None) == (pixel_sets is None):
        raise ValueError("give exactly one of pixel_keys/segment_keys or pixel_sets/segment_sets")
    n = features.shape[0]
    if n == 0:
        return features.new_zeros(0, dtype=torch.float32)
    kappa = float(kappa)
    grad = torch.is_grad_enabled() and (features.requires_grad or prototypes.requires_grad)
    keep = (not use_checkpoint) or n * prototypes.shape[0] * 4 <= keep_bytes
    out = []
    for start in range(0, n, chunk_size):
        sl = slice(start, start + chunk_size)
        masks = (
            None if pixel_keys is None else pixel_keys[sl], segment_keys,
            None if pixel_sets is None else pixel_sets[sl], segment_sets,
            None if pixel_groups is None else pixel_groups[sl], segment_groups,
        )
        if grad:
            out.append(_ContrastiveChunk.apply(features[sl], prototypes, own_segment[sl], masks, kappa, exact, keep, grad_rows))
        else:
            out.append(_chunk_stats(features[sl], own_segment[sl], prototypes, masks, kappa, exact, False)[0])
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
    # the first num_current candidates are the current batch; the rest (the memory bank) are detached,
    # so the backward skips their prototype gradients. None: all candidates get gradients.
    num_current: Optional[int] = None

    @classmethod
    def from_fields(cls, fields: Dict[str, torch.Tensor], num_current: Optional[int] = None) -> "SPMLCandidates":
        """From `Segments.fields()`-style dicts (gathered, with the memory appended after num_current rows)."""
        return cls(fields["prototypes"], fields["labels"], fields["images"], fields.get("tags"),
                   fields.get("aff_prototypes"), num_current)


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
        grad_rows=None if candidates.num_current is None else int(s[:candidates.num_current].sum()),
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
        grad_rows=candidates.num_current,
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
        grad_rows=candidates.num_current,
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
