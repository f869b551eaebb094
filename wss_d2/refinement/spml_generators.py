"""
SPML's stage-B pseudo-label generators (docs/spml.md §9.4): functions from a stage-A model and one
image dict to a (K, H, W) class-probability map (and, for DensePose, the void mask to restore), then a
label map by dense CRF + argmax (`crf_pseudo_labels`) or plain argmax.

The model is any nn.Module with the SPMLEmbedder inference contract: called on a list of image dicts
({"image": (C, H, W), "height", "width"}), it returns per image {"embedding": (D, H, W) unit embedding
at the input's size, "sem_seg": (K, H, W) logits of the auxiliary classifier, "sem_seg_kind": "logits"}
and optionally "raw_embedding" (D, h, w), the embedding before normalisation, which the random walk
prefers (wss_d2.refinement.embedding_walk.walk_embedding). Multi-scale and flipped passes call the
model on rescaled (bilinear, align_corners=False, float) or mirrored copies of the image; every output
is flipped back before it is combined. H x W is the size of the dict's "image". The walk, k-means and
retrieval run on the model's device (a 64-step walk of a 500 x 375 image: ~7 s on 2 CPU cores); the
generators return CPU tensors.

Generators (defaults = the official code; every number is a keyword):
  (a) `softmax_rw_probabilities`    boxes, scribbles, points: scale 1 ± flip; the logits are resized to
      H//8 x W//8, softmaxed per pass and the probabilities averaged; each class divided by its spatial
      max; classes absent from the weak-label map zeroed (background too unless present); random walk
      s = 6; upsampled; then CRF.
  (b) `cam_rw_probabilities`        tags, round 1: the image's CAMs (wss_d2's .npy format, the mapper's
      "cams" / "cam_labels") with the background (1 − max_c CAM_c)^6, resized to 1/8, random walk s = 6
      on the scale-1 ± flip embedding affinity, upsampled; then CRF.
  (c) `knn_probabilities`           tags: soft k-NN votes (k = 20) of the image's segments at scales
      {0.5, 1, 1.5, 2} x flip in a memory (`build_knn_memory`: the current pseudo labels' segments at
      scales {0.5, 1, 1.5}, no flip), upsampled, un-flipped, averaged; each class present in the weak
      label divided by max(max P_c, 0.15), absent classes left as they are; then CRF.
  (d) `softmax_rw1_probabilities`   tags, round 2: scales {0.75, 1} x flip; the logits resized to 1/8 and
      averaged, then softmaxed; class-max normalisation, absent classes zeroed; one random-walk step
      (s = 0); upsampled; argmax without CRF.
  (e) `densepose_nn_probabilities`  DensePose points: the embedding at half size, no flip; void (255)
      pixels of the point map join the clustering as unlabelled (K); segments = k-means (24 x 24 grid on
      [ê ⊕ xy]) ∩ label ∩ over-segment; every pixel takes the one-hot label of its nearest labelled
      segment prototype, averaged per segment; resized to 1/8, class-max normalised, absent classes
      zeroed, random walk s = 6, upsampled; then CRF, and the point map's void pixels set back to 255.

"Present" classes are those of the image's weak-label map: the dict's "sparse_sem_seg" (values < K),
else its "sem_seg", else its "image_labels"; a `present` argument overrides them.

CRF: SPML's unary is −log(clip(P, 1e-5, 1)) of the *unnormalised* P (docs/spml.md §9.6), so the CRF is
the TEST.CRF one (whose defaults are SPML's: 10 iterations, Gaussian sxy 1 compat 3, bilateral sxy 67
srgb 3 compat 4) built to accept per-pixel sums in [0, K] (`spml_crf`).
"""
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..inference.crf import DenseCRF, DenseCRFPool
from ..modeling.kmeans import NUM_LABEL_VALUES, segment_prototypes
from .crf_labels import argmax_labels
from .embedding_walk import embedding_random_walk, resize_bilinear, walk_embedding, walk_size
from .knn import DEFAULT_K, build_segment_memory, image_segments, knn_segment_retrieval

__all__ = [
    "SPML_SOURCES",
    "PassOutput",
    "model_pass",
    "present_classes",
    "class_max_normalize",
    "cam_class_scores",
    "softmax_rw_probabilities",
    "softmax_rw1_probabilities",
    "cam_rw_probabilities",
    "build_knn_memory",
    "knn_probabilities",
    "densepose_nn_probabilities",
    "spml_probabilities",
    "spml_crf",
    "spml_crf_pool",
    "crf_pseudo_labels",
]

# --source name of tools/export_pseudo_labels.py -> (generator, runs the CRF, needs a k-NN memory, help)
SPML_SOURCES: Dict[str, Tuple[str, bool, bool, str]] = {
    "spml_softmax_rw": ("softmax_rw_probabilities", True, False,
                        "SPML (a): aux-head softmax (scale 1 ± flip) + embedding random walk (64 steps) + CRF; "
                        "boxes, scribbles, points"),
    "spml_cam_rw": ("cam_rw_probabilities", True, False,
                    "SPML (b): the CAMs of --dataset (a DATASETS.CAMS set) + background (1-max)^6 + embedding "
                    "random walk + CRF; tags round 1"),
    "spml_knn": ("knn_probabilities", True, True,
                 "SPML (c): soft k-NN segment retrieval (k 20, scales 0.5-2 x flip) in a memory of "
                 "--memory-dataset's pseudo labels + CRF; tags"),
    "spml_softmax_rw1": ("softmax_rw1_probabilities", False, False,
                         "SPML (d): aux-head softmax (scales 0.75, 1 x flip) + one random-walk step, no CRF; "
                         "tags round 2"),
    "spml_densepose_nn_rw": ("densepose_nn_probabilities", True, False,
                             "SPML (e): nearest labelled prototype per pixel (half size, over-segments) + "
                             "random walk + CRF, void restored to 255; DensePose points"),
}


class PassOutput(NamedTuple):
    """One model pass at one scale (and flip), at the rescaled size, flipped back unless asked not to."""
    embedding: torch.Tensor  # (D, h, w) unit
    walk_source: torch.Tensor  # (D, h', w') the raw embedding when the model gives one, else `embedding`
    logits: torch.Tensor  # (K, h, w)


def _scaled_size(height: int, width: int, scale: float) -> Tuple[int, int]:
    return max(int(round(height * scale)), 1), max(int(round(width * scale)), 1)


@torch.no_grad()
def model_pass(model, image_dict, scale: float = 1.0, flip: bool = False, unflip: bool = True) -> PassOutput:
    """Run `model` on the dict's image rescaled by `scale` (bilinear) and mirrored when `flip`."""
    image = image_dict["image"]
    size = _scaled_size(image.shape[-2], image.shape[-1], scale)
    if tuple(size) != tuple(image.shape[-2:]):
        image = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False)[0]
    if flip:
        image = image.flip(-1)
    output = model([{"image": image, "height": size[0], "width": size[1]}])[0]
    embedding = F.normalize(resize_bilinear(output["embedding"].float(), size), dim=0)
    logits = resize_bilinear(output["sem_seg"].float(), size)
    raw = output.get("raw_embedding")
    walk_source = embedding if raw is None else raw.float()
    if flip and unflip:
        embedding, walk_source, logits = embedding.flip(-1), walk_source.flip(-1), logits.flip(-1)
    return PassOutput(embedding, walk_source, logits)  # on the model's device: the walk runs there


def present_classes(image_dict, num_classes: int, present=None) -> torch.Tensor:
    """(K,) bool: the classes of the image's weak-label map (see the module docstring)."""
    if present is not None:
        return torch.as_tensor(np.asarray(present)).reshape(-1).bool()
    for key in ("sparse_sem_seg", "sem_seg"):
        if key in image_dict:
            values = torch.as_tensor(image_dict[key]).reshape(-1).long()
            values = values[(values >= 0) & (values < num_classes)]
            return torch.bincount(values, minlength=num_classes)[:num_classes] > 0
    if "image_labels" in image_dict:
        return torch.as_tensor(image_dict["image_labels"]).reshape(-1) > 0
    raise KeyError("SPML pseudo labels: the image dict has no weak label (sparse_sem_seg, sem_seg or image_labels) "
                   "to tell the present classes; pass `present`")


def class_max_normalize(probs: torch.Tensor, present: torch.Tensor, *, floor: Optional[float] = None,
                        zero_absent: bool = True) -> torch.Tensor:
    """
    (K, h, w) maps with every present class divided by its spatial max (by max(max, floor) when a floor
    is given; a class whose max is 0 stays 0); absent classes zeroed (`zero_absent`) or left as they are.
    """
    peak = probs.flatten(1).max(dim=1).values
    if floor is not None:
        peak = peak.clamp_min(floor)
    scale = torch.where(peak > 0, 1.0 / peak.clamp_min(1e-30), torch.zeros_like(peak))
    present = present.to(probs.device).bool()
    if not zero_absent:
        scale = torch.where(present, scale, torch.ones_like(scale))
    else:
        scale = scale * present.to(scale.dtype)
    return probs * scale[:, None, None]


def _passes(scales: Sequence[float], flips: Sequence[bool]):
    return [(float(s), bool(f)) for s in scales for f in flips]


@torch.no_grad()
def softmax_rw_probabilities(model, image_dict, num_classes: int, *, scales=(1.0,), flips=(False, True),
                             average: str = "probabilities", exp_times: int = 6, present=None,
                             affinity_scales: Optional[Sequence[float]] = None) -> torch.Tensor:
    """
    Generator (a) (and (d) with other arguments): (K, H, W) walked class probabilities of the model's
    auxiliary logits. `average` "probabilities": softmax per pass, then the mean (a); "logits": the mean
    of the resized logits, then softmax (d). The affinity averages the passes at `affinity_scales`
    (None: every scale of the scores).
    """
    if average not in ("probabilities", "logits"):
        raise ValueError(f"softmax_rw_probabilities: average must be 'probabilities' or 'logits', got {average!r}")
    height, width = image_dict["image"].shape[-2:]
    grid = walk_size(height, width)
    total, walk_embeddings, count = None, [], 0
    for scale, flip in _passes(scales, flips):
        out = model_pass(model, image_dict, scale, flip)
        small = resize_bilinear(out.logits, grid)
        term = torch.softmax(small, dim=0) if average == "probabilities" else small
        total = term if total is None else total + term
        count += 1
        if affinity_scales is None or any(abs(scale - s) < 1e-9 for s in affinity_scales):
            walk_embeddings.append(walk_embedding(out.walk_source, grid))
    probs = total / count
    if average == "logits":
        probs = torch.softmax(probs, dim=0)
    probs = class_max_normalize(probs, present_classes(image_dict, num_classes, present))
    walked = embedding_random_walk(probs, walk_embeddings, exp_times=exp_times, output_size=(height, width))
    return walked.clamp(0, 1).cpu()


def softmax_rw1_probabilities(model, image_dict, num_classes: int, *, scales=(0.75, 1.0), flips=(False, True),
                              exp_times: int = 0, present=None, affinity_scales=None) -> torch.Tensor:
    """Generator (d): `softmax_rw_probabilities` with scales {0.75, 1} x flip, logits averaged, one step."""
    return softmax_rw_probabilities(model, image_dict, num_classes, scales=scales, flips=flips, average="logits",
                                    exp_times=exp_times, present=present, affinity_scales=affinity_scales)


def cam_class_scores(cams, cam_labels, num_classes: int, background_class: Optional[int] = 0,
                     background_power: float = 6.0) -> torch.Tensor:
    """
    (K, H, W) scores of CAMs (C, H, W) of label values `cam_labels`: the foreground maps (clipped to
    [0, 1]) in their classes, the background (1 − max_c CAM_c)^power in `background_class` (a background
    map in the file is replaced by it), every other class 0.
    """
    cams = torch.as_tensor(np.asarray(cams) if not torch.is_tensor(cams) else cams).float().clamp(0, 1)
    labels = torch.as_tensor(np.asarray(cam_labels) if not torch.is_tensor(cam_labels) else cam_labels).long()
    keep = labels != (-1 if background_class is None else background_class)
    cams, labels = cams[keep], labels[keep]
    scores = cams.new_zeros(num_classes, *cams.shape[-2:])
    if labels.numel():
        scores.index_copy_(0, labels, cams)
    if background_class is not None:
        peak = cams.max(dim=0).values if labels.numel() else cams.new_zeros(cams.shape[-2:])
        scores[background_class] = (1 - peak).pow(background_power)
    return scores


@torch.no_grad()
def cam_rw_probabilities(model, image_dict, num_classes: int, *, cams=None, cam_labels=None,
                         background_class: Optional[int] = 0, background_power: float = 6.0, exp_times: int = 6,
                         flips=(False, True)) -> torch.Tensor:
    """Generator (b): (K, H, W) walked CAM scores (the dict's "cams" / "cam_labels" unless given)."""
    if cams is None:
        if "cams" not in image_dict:
            raise KeyError("cam_rw_probabilities: the image dict has no 'cams' (register the split's CAM files)")
        cams, cam_labels = image_dict["cams"], image_dict["cam_labels"]
    height, width = image_dict["image"].shape[-2:]
    scores = cam_class_scores(cams, cam_labels, num_classes, background_class, background_power)
    if tuple(scores.shape[-2:]) != (height, width):
        raise ValueError(f"cam_rw_probabilities: CAMs of size {tuple(scores.shape[-2:])} for an image of "
                         f"size {(height, width)}")
    grid = walk_size(height, width)
    walk_embeddings = [walk_embedding(model_pass(model, image_dict, 1.0, flip).walk_source, grid) for flip in flips]
    small = resize_bilinear(scores.to(walk_embeddings[0].device), grid)
    walked = embedding_random_walk(small, walk_embeddings, exp_times=exp_times, output_size=(height, width))
    return walked.clamp(0, 1).cpu()


def _resize_nearest(labels: torch.Tensor, size) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels.long()
    return F.interpolate(labels[None, None].float(), size=tuple(size), mode="nearest")[0, 0].long()


@torch.no_grad()
def build_knn_memory(model, memory_dicts, *, scales=(0.5, 1.0, 1.5), grid=(12, 12), iterations: int = 10,
                     label_key: str = "sem_seg") -> Tuple[torch.Tensor, torch.Tensor]:
    """
    The k-NN memory of generator (c): prototypes [M, D] and labels [M] of the segments of every dict's
    embedding at each scale (no flip), labelled by the majority of its (nearest-resized) `label_key` map;
    void-majority segments dropped.
    """
    prototypes, labels = [], []
    for record in memory_dicts:
        if label_key not in record:
            raise KeyError(f"build_knn_memory: a memory image has no {label_key!r} (register its pseudo labels)")
        for scale in scales:
            out = model_pass(model, record, scale, False)
            label = _resize_nearest(torch.as_tensor(record[label_key]).to(out.embedding.device),
                                    out.embedding.shape[-2:])
            p, lab = build_segment_memory(out.embedding[None], label[None], grid, iterations)
            prototypes.append(p)
            labels.append(lab)
    if not prototypes:
        raise ValueError("build_knn_memory: no memory image")
    return torch.cat(prototypes), torch.cat(labels)


@torch.no_grad()
def knn_probabilities(model, image_dict, num_classes: int, memory: torch.Tensor, memory_labels: torch.Tensor, *,
                      scales=(0.5, 1.0, 1.5, 2.0), flips=(False, True), k: int = DEFAULT_K, grid=(12, 12),
                      iterations: int = 10, floor: float = 0.15, present=None) -> torch.Tensor:
    """
    Generator (c): (K, H, W) mean soft k-NN votes over the scales and flips (each pass clustered as the
    model saw it, then upsampled and un-flipped); present classes divided by max(max P_c, floor), absent
    ones left unnormalised.
    """
    height, width = image_dict["image"].shape[-2:]
    total, count = None, 0
    for scale, flip in _passes(scales, flips):
        out = model_pass(model, image_dict, scale, flip, unflip=False)
        device = out.embedding.device
        _, scores = knn_segment_retrieval(out.embedding[None], memory.to(device), memory_labels.to(device),
                                          num_classes, k, grid, iterations)
        scores = resize_bilinear(scores[0], (height, width))
        if flip:
            scores = scores.flip(-1)
        total = scores if total is None else total + scores
        count += 1
    probs = total / count
    present = present_classes(image_dict, num_classes, present)
    return class_max_normalize(probs, present, floor=floor, zero_absent=False).clamp(0, 1).cpu()


@torch.no_grad()
def densepose_nn_probabilities(model, image_dict, num_classes: int, *, scale: float = 0.5, grid=(24, 24),
                               iterations: int = 10, exp_times: int = 6, present=None, void_value: int = 255,
                               label_key: str = "sparse_sem_seg", chunk_size: int = 65536):
    """
    Generator (e): ((K, H, W) walked nearest-prototype label distributions, (H, W) bool void mask of the
    point map, to be set back to `void_value` after the CRF). Uses the dict's `label_key` point map
    (0..K-1 points, K unlabelled, 255 void) and its "overseg" region ids (one region without them).
    """
    if label_key not in image_dict:
        raise KeyError(f"densepose_nn_probabilities: the image dict has no {label_key!r} point map")
    height, width = image_dict["image"].shape[-2:]
    out = model_pass(model, image_dict, scale, False)
    device = out.embedding.device
    points = torch.as_tensor(image_dict[label_key]).long().to(device)
    void = points == void_value
    h, w = out.embedding.shape[-2:]
    labels = _resize_nearest(torch.where(void, torch.full_like(points, num_classes), points), (h, w)).reshape(-1)
    overseg = image_dict.get("overseg")
    regions = (torch.zeros_like(labels) if overseg is None
               else _resize_nearest(torch.as_tensor(overseg).to(device), (h, w)).reshape(-1))
    clusters = image_segments(out.embedding[None], None, grid, iterations).cluster_ids.reshape(-1)

    num_regions = int(regions.max()) + 1 if regions.numel() else 1
    key = (clusters * NUM_LABEL_VALUES + labels) * num_regions + regions
    unique_keys, segment = torch.unique(key, sorted=True, return_inverse=True)
    s = unique_keys.numel()
    segment_label = (unique_keys // num_regions) % NUM_LABEL_VALUES
    pixels = out.embedding.reshape(out.embedding.shape[0], -1).t()  # (h·w, D) unit
    prototypes = segment_prototypes(pixels, segment, s)
    labelled = segment_label < num_classes
    onehot = torch.zeros(h * w, num_classes, device=device)
    if labelled.any():
        bank, bank_labels = prototypes[labelled], segment_label[labelled]
        for start in range(0, h * w, chunk_size):
            nearest = (pixels[start:start + chunk_size] @ bank.t()).argmax(dim=1)
            onehot[start:start + chunk_size] = F.one_hot(bank_labels[nearest], num_classes).float()
    per_segment = torch.zeros(s, num_classes, device=device).index_add_(0, segment, onehot)
    per_segment = per_segment / per_segment.sum(dim=1, keepdim=True).clamp_min(1e-12)
    dist = per_segment[segment].t().reshape(num_classes, h, w)

    rw_grid = walk_size(height, width)
    small = resize_bilinear(dist, rw_grid)
    present = present_classes({"sparse_sem_seg": points}, num_classes, present)
    small = class_max_normalize(small, present)
    walked = embedding_random_walk(small, [walk_embedding(out.walk_source, rw_grid)], exp_times=exp_times,
                                   output_size=(height, width))
    return walked.clamp(0, 1).cpu(), void.cpu()


def spml_probabilities(source: str, model, image_dict, num_classes: int, *, memory=None, background_class=0,
                       grid=None):
    """
    ((K, H, W) probabilities, void mask or None) of the generator behind an export `source` name.
    grid: the k-means grid (G, G) of the generators that cluster ((c) k-NN, (e) DensePose), the export's
    MODEL.SPML.KMEANS_GRID_TEST; None: their own defaults (12 and 24, the recipes' values).
    """
    grid_kw = {} if grid is None else {"grid": tuple(grid)}
    if source not in SPML_SOURCES:
        raise ValueError(f"spml_probabilities: source must be one of {sorted(SPML_SOURCES)}, got {source!r}")
    if source == "spml_softmax_rw":
        return softmax_rw_probabilities(model, image_dict, num_classes), None
    if source == "spml_softmax_rw1":
        return softmax_rw1_probabilities(model, image_dict, num_classes), None
    if source == "spml_cam_rw":
        return cam_rw_probabilities(model, image_dict, num_classes, background_class=background_class), None
    if source == "spml_knn":
        if memory is None:
            raise ValueError("spml_knn needs a k-NN memory (build_knn_memory of --memory-dataset)")
        return knn_probabilities(model, image_dict, num_classes, memory[0], memory[1], **grid_kw), None
    return densepose_nn_probabilities(model, image_dict, num_classes, **grid_kw)


def spml_crf(cfg, num_classes: int, node: str = "TEST.CRF") -> DenseCRF:
    """
    The CRF of `node` (TEST.CRF's defaults are SPML's) taking SPML's unnormalised maps: per-pixel sums
    anywhere in [0, K] are accepted, so the unary is exactly −log(clip(P, 1e-5, 1)).
    """
    return DenseCRF(**DenseCRF.from_config(cfg, node=node), sum_tolerance=float(num_classes))


def spml_crf_pool(cfg, num_classes: int) -> DenseCRFPool:
    """A `DenseCRFPool` of `spml_crf` with TEST.CRF's workers and queue length."""
    return DenseCRFPool(spml_crf(cfg, num_classes), num_workers=cfg.TEST.CRF.NUM_WORKERS,
                        max_pending=cfg.TEST.CRF.MAX_PENDING)


def crf_pseudo_labels(items, pool=None, *, threshold: float = 0.0, ignore_label: int = 255,
                      void_value: int = 255):
    """
    (key, uint8 label map) per item of `items`, (key, uint8 RGB image, (K, H, W) probabilities in
    [0, 1], (H, W) void mask or None) tuples: argmax after the CRF on `pool` (none: plain argmax), then
    the void pixels set to `void_value`. Input order; the pool bounds the memory.
    """
    voids = {}

    def checked():
        for key, image, probs, void in items:
            probs = probs.numpy() if torch.is_tensor(probs) else np.asarray(probs)
            if probs.min() < 0 or probs.max() > 1 + 1e-4:
                raise ValueError(f"crf_pseudo_labels: probabilities of {key!r} leave [0, 1]")
            voids[key] = None if void is None else np.asarray(void, dtype=bool)
            yield key, image, probs.astype(np.float32)

    for key, label in argmax_labels(checked(), threshold, ignore_label, pool):
        void = voids.pop(key)
        if void is not None:
            label = label.copy()
            label[void] = void_value
        yield key, label
