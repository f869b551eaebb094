"""
SPML's meta-architectures (docs/spml.md §5, §6, §7, §9.5, §12.1).

`SPMLEmbedder` (stage A): backbone -> embedding head -> raw stride-4 embedding e. In training:
- segments of every image (`form_segments`: spherical k-means on [ê ⊕ xy] (⊕ colour for
  "xy_rgb"), split by the nearest-downsampled weak label and over-segmentation), gathered over
  processes (`gather_segments`, prototypes with gradients), followed by the memory bank;
- the auxiliary classifier on the *detached* ê, its logits upsampled bilinearly to the label size,
  cross entropy on labels < K (docs/spml.md §7.6);
- `spml_total_loss`: {loss_sem_ann: w_C·(CE + L_C), loss_sem_occ: w_O·L_O, loss_img_sim: w_V·L_V,
  loss_feat_aff: w_A·L_A (only with MODEL.SPML.FEATURE_AFFINITY)}; a term of weight 0 is left out.
The global segment set is pushed (detached) into the memory bank once the losses are computed, so
the next iteration sees it; the bank is not part of the state dict.

Inputs: `image`, `sparse_sem_seg` (0..K-1 labelled, K..254 unlabelled, 255 void) or `sem_seg`
(dense, 255 void), `overseg` (H, W) region ids, `image_labels` (K,) of the full weak label (the
tags of (O): the foreground columns 1..K-1; without them the crop's labels give the tags).

Inference, per image (docs/spml.md §9.1): the image (its longer side resized to TEST.SPML.IMAGE_SIZE,
0 = as it is) padded bottom/right with 0 (normalised space) to at least TEST.SPML.WINDOW_SIZE and cut
into windows of that size (0 = one pass over the image padded to the backbone's divisibility); each
window's embedding upsampled bilinearly to the window, L2-normalised and averaged where windows
overlap; the classifier applied on that full-resolution unit embedding (docs/spml.md §5.4); both
resized to (height, width):
{"embedding": (D, H, W) unit embedding, "raw_embedding": (D, h, w) the embedding before normalisation
of the whole padded image in one pass at the resized size (the random walk's start, docs/spml.md §9.3),
"sem_seg": (K, H, W) logits, "sem_seg_kind": "logits"}.
(The released code sums per-window logits; here the head runs once on the averaged embedding, which
differs only where windows overlap.)

`SPMLClassifier` (stage C/T): the stage-A backbone and embedding head, frozen (eval mode, no
gradient), with a fresh classifier trained by cross entropy on labels < K (MODEL.SPML.TRAIN_EMBEDDING:
the whole network trained end to end instead, the naive partial-CE baseline). Its attribute names
match the embedder's (`backbone`, `sem_seg_head`) while its head is `classifier` (the embedder's is
`aux_classifier`), so MODEL.WEIGHTS = a stage-A checkpoint loads only the embedding network.
Inference returns the embedder's keys (so the stage-B generators run on a stage-C head); the protocols of
docs/spml.md §9.5 are (i) as is, (ii) with TEST.CRF.ENABLED, (iii) TEST.TTA (scales 0.5..1.5,
flip, softmax after resize, mean) + CRF with TEST.SPML.IMAGE_SIZE 0.
"""
import logging
import math
from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone, build_sem_seg_head

from ...modeling.batching import stack_crops
from ...modeling.normalization import normalize_images
from .config import LOSS_NAMES, LOSS_RELATIONS, concentration_key, loss_weight_key
from .heads import SPMLClassifierHead
from .losses import SPML_SETTINGS, SPMLCandidates, spml_total_loss
from .memory import PrototypeMemoryBank, _world, append_memory, gather_segments
from .segments import form_segments, image_tags, smoothed_color_features

__all__ = ["SPMLEmbedder", "SPMLClassifier", "spml_setting_from_config", "check_setting", "window_starts"]

logger = logging.getLogger(__name__)

CLUSTER_FEATURES = ("xy", "xy_rgb")
IMG_SIM_FEATURES = ("cluster", "embedding")
FROZEN_STAGE_NAMES = ("stem", "res2", "res3", "res4", "res5")


def spml_setting_from_config(spml) -> Dict:
    """The loss recipe (in SPML_SETTINGS' format) of the MODEL.SPML keys; weight 0 = term off."""
    setting = {"img_sim_features": spml.IMG_SIM_FEATURES}
    for name in LOSS_NAMES:
        relation = LOSS_RELATIONS[name]
        weight = float(spml[loss_weight_key(name)])
        if weight < 0:
            raise ValueError(f"MODEL.SPML.{loss_weight_key(name)} must be >= 0, got {weight}")
        term = dict(kappa=float(spml[concentration_key(name)]), weight=weight) if weight > 0 else None
        if relation == "feat_aff" and term is not None:
            term.update(threshold=float(spml.FEAT_AFF_THRESHOLD), aff_scale=float(spml.FEAT_AFF_SCALE))
        setting[relation] = term
    return setting


def check_setting(spml):
    """
    With MODEL.SPML.SETTING naming an SPML_SETTINGS recipe, the MODEL.SPML keys must equal it
    (a ValueError lists the differences); SETTING "" skips the check.
    """
    name = spml.SETTING
    if not name:
        return
    if name not in SPML_SETTINGS:
        raise ValueError(f"MODEL.SPML.SETTING must be one of {sorted(SPML_SETTINGS)} or '' (custom), got {name!r}")
    table = SPML_SETTINGS[name]
    found = spml_setting_from_config(spml)
    wrong = []
    for loss in LOSS_NAMES:
        relation = LOSS_RELATIONS[loss]
        expected = table.get(relation)
        if relation == "feat_aff":  # configured but not applied by the release: only with the switch
            expected = (table.get("feat_aff") or table.get("feat_aff_paper")) if spml.FEATURE_AFFINITY else None
        got = found[relation] if (relation != "feat_aff" or spml.FEATURE_AFFINITY) else None
        exp_w = 0.0 if expected is None else expected["weight"]
        got_w = 0.0 if got is None else got["weight"]
        if abs(exp_w - got_w) > 1e-12:
            wrong.append(f"MODEL.SPML.{loss_weight_key(loss)}={got_w} (recipe {exp_w})")
        elif expected is not None and abs(expected["kappa"] - got["kappa"]) > 1e-12:
            wrong.append(f"MODEL.SPML.{concentration_key(loss)}={got['kappa']} (recipe {expected['kappa']})")
    for key, field in (("KMEANS_GRID_TRAIN", "grid_train"), ("KMEANS_GRID_TEST", "grid_test"),
                       ("MEMORY_BANK_SIZE", "memory_size"), ("EMBED_DIM", "embed_dim"),
                       ("IMG_SIM_FEATURES", "img_sim_features")):
        if field in table and spml[key] != table[field]:
            wrong.append(f"MODEL.SPML.{key}={spml[key]} (recipe {table[field]})")
    if wrong:
        raise ValueError(
            f"MODEL.SPML.SETTING {name!r} differs from its recipe in: {'; '.join(wrong)}. Set the keys to the "
            "recipe's values, or MODEL.SPML.SETTING '' for a custom recipe"
        )


def _pad_to(x: torch.Tensor, divisor: int, value: float) -> torch.Tensor:
    """Pad the last two dims at the bottom/right to multiples of `divisor`."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % divisor, (-w) % divisor
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), value=value)


def window_starts(length: int, window: int):
    """
    Start offsets of the windows over `length` (docs/spml.md §9.1): n = ceil((length - window) /
    window) + 1 windows whose ends are the integer-truncated linspace(window, length, n), so the
    last one ends at the border (and may overlap the previous one).
    """
    if length <= window:
        return [0]
    n = math.ceil((length - window) / window) + 1
    return [int(window + (length - window) * i / (n - 1)) - window for i in range(n)]


def _resize_long_side(image: torch.Tensor, size: int) -> torch.Tensor:
    """(1, C, H, W) float image with its longer side resized to `size` (bilinear); 0 = unchanged."""
    if size <= 0:
        return image
    h, w = image.shape[-2:]
    ratio = min(size / h, size / w)
    new = (max(1, int(h * ratio)), max(1, int(w * ratio)))
    if new == (h, w):
        return image
    return F.interpolate(image, size=new, mode="bilinear", align_corners=False)


def _embedding_outputs(e, raw, logits, size, sem_seg_kind):
    """The inference dict of both models: embedding and logits at the output size, raw embedding as computed."""
    if tuple(e.shape[-2:]) != size:
        e = F.normalize(F.interpolate(e, size=size, mode="bilinear", align_corners=False), dim=1)
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    return {"embedding": e[0], "raw_embedding": raw[0], "sem_seg": logits[0], "sem_seg_kind": sem_seg_kind}


def _freeze_stages(backbone, stages):
    """MODEL.SPML.FROZEN_STAGES: left out of the optimizer; their BatchNorm keeps running in train mode."""
    for stage in stages:
        if stage not in FROZEN_STAGE_NAMES or not hasattr(backbone, stage):
            raise ValueError(f"MODEL.SPML.FROZEN_STAGES: {stage!r} is not a stage of the backbone ({FROZEN_STAGE_NAMES})")
        for p in getattr(backbone, stage).parameters():
            p.requires_grad_(False)


def training_labels(batched_inputs, method: str) -> torch.Tensor:
    """(B, H, W) weak labels: `sparse_sem_seg` (K unlabelled) or a dense `sem_seg`."""
    key = "sparse_sem_seg" if "sparse_sem_seg" in batched_inputs[0] else "sem_seg"
    if key not in batched_inputs[0]:
        raise KeyError(
            f"{method} trains on per-pixel weak labels ('sparse_sem_seg', or 'sem_seg'); "
            f"{batched_inputs[0].get('file_name', '?')} has neither"
        )
    return stack_crops(batched_inputs, key).long()


def cross_entropy_on_labelled(logits: torch.Tensor, labels: torch.Tensor, num_classes: int,
                              ignore_value: int = 255) -> torch.Tensor:
    """CE of (B, K, h, w) logits upsampled bilinearly to the (B, H, W) labels; labels >= K ignored."""
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    target = torch.where(labels < num_classes, labels, torch.full_like(labels, ignore_value))
    if not (target != ignore_value).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), target, ignore_index=ignore_value)


class _SPMLEmbedding(nn.Module):
    """Backbone + embedding head + normalisation shared by both SPML meta-architectures."""

    def _init_embedding(self, backbone, sem_seg_head, pixel_mean, pixel_std, test_image_size, test_window_size):
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.test_image_size = int(test_image_size)
        self.test_window_size = int(test_window_size)
        if self.test_image_size < 0 or self.test_window_size < 0:
            raise ValueError("TEST.SPML.IMAGE_SIZE and TEST.SPML.WINDOW_SIZE must be >= 0 (0 = off)")
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        in_feature = getattr(sem_seg_head, "in_feature", None)
        if in_feature is None or not hasattr(sem_seg_head, "embed_dim"):
            raise ValueError(
                "SPML needs an embedding head (MODEL.SEM_SEG_HEAD.NAME 'SPMLASPPv2SumHead' or "
                f"'SPMLPSPEmbedHead'), got {type(sem_seg_head).__name__}"
            )

    @property
    def device(self):
        return self.pixel_mean.device

    @property
    def size_divisibility(self) -> int:
        return max(int(getattr(self.backbone, "size_divisibility", 0) or 1), 1)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Raw (B, D, H/s, W/s) embedding of normalised (B, 3, H, W) images."""
        return self.sem_seg_head(self.backbone(images))

    def _normalised_training_images(self, batched_inputs):
        """Normalised crops; crop padding (the mapper's valid_mask False) becomes exactly 0, the mean."""
        images = stack_crops(batched_inputs, "image").to(self.device)
        valid = stack_crops(batched_inputs, "valid_mask") if "valid_mask" in batched_inputs[0] else None
        return normalize_images(images, self.pixel_mean, self.pixel_std, valid)

    def _embed_full(self, image: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(1, D, h, w) embedding (unit, or raw) of a normalised image at its own size (one pass)."""
        h, w = image.shape[-2:]
        padded = _pad_to(image, self.size_divisibility, 0.0)
        e = self.embed(padded)
        e = F.interpolate(e, size=padded.shape[-2:], mode="bilinear", align_corners=False)[..., :h, :w]
        return F.normalize(e, dim=1) if normalize else e

    def _inference_embedding(self, input) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        ((1, D, h, w) unit embedding, (1, D, h, w) raw embedding) at the (resized) image size.

        Unit: with TEST.SPML.WINDOW_SIZE s > 0 (docs/spml.md §9.1) the image is padded bottom/right
        with 0 to at least s x s, windows of s at the positions of `window_starts`, each window's unit
        embedding accumulated and divided by the per-pixel window count (then re-normalised, which
        changes only overlaps), cropped to the image.
        Raw: the embedding before normalisation of the whole padded image in one pass, which the
        random walk starts from (docs/spml.md §9.3); no extra pass when one window covers the image.
        """
        image = normalize_images(input["image"].to(self.device)[None], self.pixel_mean, self.pixel_std)
        image = _resize_long_side(image, self.test_image_size)
        s = self.test_window_size
        if s <= 0:
            raw = self._embed_full(image, normalize=False)
            return F.normalize(raw, dim=1), raw
        h, w = image.shape[-2:]
        ph, pw = max(h, s), max(w, s)
        padded = F.pad(image, (0, pw - w, 0, ph - h), value=0.0)
        ys, xs = window_starts(ph, s), window_starts(pw, s)
        if len(ys) == 1 and len(xs) == 1:
            raw = self._embed_full(padded, normalize=False)
            # normalised twice, as a one-window pass of the loop below (bit-identical outputs)
            return F.normalize(F.normalize(raw, dim=1), dim=1)[..., :h, :w], raw[..., :h, :w]
        total, count = None, padded.new_zeros(1, 1, ph, pw)
        for y in ys:
            for x in xs:
                e = self._embed_full(padded[..., y:y + s, x:x + s])
                if total is None:
                    total = padded.new_zeros(1, e.shape[1], ph, pw)
                total[..., y:y + s, x:x + s] += e
                count[..., y:y + s, x:x + s] += 1
        raw = self._embed_full(padded, normalize=False)[..., :h, :w]
        return F.normalize((total / count)[..., :h, :w], dim=1), raw

    @staticmethod
    def _output_size(input):
        return int(input.get("height", input["image"].shape[-2])), int(input.get("width", input["image"].shape[-1]))


@META_ARCH_REGISTRY.register()
class SPMLEmbedder(_SPMLEmbedding):
    """SPML stage A: pixel-to-segment contrastive embedding + detached auxiliary classifier."""

    sem_seg_kind = "logits"
    # its segments and memory bank are formed from the whole global batch: no gradient accumulation
    supports_gradient_accumulation = False

    @configurable
    def __init__(
        self,
        *,
        backbone,
        sem_seg_head,
        num_classes: int,
        setting: Dict,
        pixel_mean,
        pixel_std,
        aux_dropout: float = 0.75,
        classifier_norm: str = "BN",
        grid_train: int = 6,
        grid_test: int = 12,
        kmeans_iterations: int = 10,
        cluster_features: str = "xy",
        memory_size: int = 2,
        unlabeled_as_void: bool = False,
        exact: bool = False,
        feature_affinity: bool = False,
        chunk_size: int = 4096,
        frozen_stages: Sequence[str] = ("stem", "res2"),
        allow_missing_overseg: bool = False,
        ce_loss_weight: float = 1.0,
        ignore_value: int = 255,
        test_image_size: int = 512,
        test_window_size: int = 512,
    ):
        """
        Args:
            setting: the loss recipe in SPML_SETTINGS' format (`spml_setting_from_config`).
            The others: the MODEL.SPML keys of the same names (wss_d2/methods/spml/config.py).
        """
        super().__init__()
        self._init_embedding(backbone, sem_seg_head, pixel_mean, pixel_std, test_image_size, test_window_size)
        if cluster_features not in CLUSTER_FEATURES:
            raise ValueError(f"MODEL.SPML.CLUSTER_FEATURES must be one of {CLUSTER_FEATURES}, got {cluster_features!r}")
        if setting.get("img_sim_features", "cluster") not in IMG_SIM_FEATURES:
            raise ValueError(f"MODEL.SPML.IMG_SIM_FEATURES must be one of {IMG_SIM_FEATURES}, got {setting['img_sim_features']!r}")
        if feature_affinity and not setting.get("feat_aff"):
            raise ValueError("MODEL.SPML.FEATURE_AFFINITY needs MODEL.SPML.FEAT_AFF_LOSS_WEIGHT > 0")
        if memory_size < 0 or grid_train < 1 or grid_test < 1 or kmeans_iterations < 0:
            raise ValueError("MODEL.SPML: MEMORY_BANK_SIZE >= 0, KMEANS_GRID_TRAIN/TEST >= 1, KMEANS_ITERATIONS >= 0")
        self.num_classes = num_classes
        self.setting = dict(setting)
        self.aux_classifier = SPMLClassifierHead(sem_seg_head.embed_dim, num_classes, aux_dropout, classifier_norm)
        self.grid_train = int(grid_train)
        self.grid_test = int(grid_test)
        self.kmeans_iterations = int(kmeans_iterations)
        self.cluster_features = cluster_features
        self.unlabeled_as_void = bool(unlabeled_as_void)
        self.exact = bool(exact)
        self.feature_affinity = bool(feature_affinity)
        self.chunk_size = int(chunk_size)
        self.allow_missing_overseg = bool(allow_missing_overseg)
        self.ce_loss_weight = float(ce_loss_weight)
        self.ignore_value = int(ignore_value)
        # not a module nor a buffer: never in a checkpoint; the first iteration sees it empty
        self.memory = PrototypeMemoryBank(size=int(memory_size))
        self.frozen_stages = tuple(frozen_stages)
        _freeze_stages(backbone, self.frozen_stages)
        logger.info(
            "SPML: unlabelled pixels (labels K..254) %s; contrastive loss %s; feature affinity %s",
            "treated as void for clustering, (V) and (O) (MODEL.SPML.UNLABELED_AS_VOID)" if self.unlabeled_as_void
            else "take part in clustering, (V) and (O)",
            "exact (logsumexp)" if self.exact else "fp32 subtract-and-test (released)",
            "on" if self.feature_affinity else "off (released)",
        )

    @classmethod
    def from_config(cls, cfg):
        spml = cfg.MODEL.SPML
        check_setting(spml)
        backbone = build_backbone(cfg)
        return {
            "backbone": backbone,
            "sem_seg_head": build_sem_seg_head(cfg, backbone.output_shape()),
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "setting": spml_setting_from_config(spml),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "aux_dropout": spml.AUX_DROPOUT,
            "classifier_norm": spml.CLASSIFIER_NORM,
            "grid_train": spml.KMEANS_GRID_TRAIN,
            "grid_test": spml.KMEANS_GRID_TEST,
            "kmeans_iterations": spml.KMEANS_ITERATIONS,
            "cluster_features": spml.CLUSTER_FEATURES,
            "memory_size": spml.MEMORY_BANK_SIZE,
            "unlabeled_as_void": spml.UNLABELED_AS_VOID,
            "exact": spml.EXACT,
            "feature_affinity": spml.FEATURE_AFFINITY,
            "chunk_size": spml.CHUNK_SIZE,
            "frozen_stages": list(spml.FROZEN_STAGES),
            "allow_missing_overseg": spml.ALLOW_MISSING_OVERSEG,
            "ce_loss_weight": spml.CE_LOSS_WEIGHT,
            "ignore_value": cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            "test_image_size": cfg.TEST.SPML.IMAGE_SIZE,
            "test_window_size": cfg.TEST.SPML.WINDOW_SIZE,
        }

    def forward(self, batched_inputs):
        if not self.training:
            return [self.inference(x) for x in batched_inputs]
        images = self._normalised_training_images(batched_inputs)
        labels = training_labels(batched_inputs, "SPMLEmbedder").to(self.device)
        if "overseg" in batched_inputs[0]:
            regions = stack_crops(batched_inputs, "overseg").long().to(self.device)
        elif self.allow_missing_overseg:
            regions = None
        else:
            raise KeyError(
                f"SPMLEmbedder needs the over-segmentation ('overseg') of {batched_inputs[0].get('file_name', '?')}: "
                "give the dataset overseg files, or MODEL.SPML.ALLOW_MISSING_OVERSEG True (one region per image)"
            )
        tags = self._tags(batched_inputs, labels)
        return self.losses(images, labels, regions, tags)

    def _tags(self, batched_inputs, labels):
        """(B, K-1) foreground tags of the full weak label (image_labels), else of the crop's labels."""
        if "image_labels" in batched_inputs[0]:
            tags = torch.stack([torch.as_tensor(x["image_labels"]).reshape(-1).float() for x in batched_inputs])
            if tags.shape[1] != self.num_classes:
                raise ValueError(f"SPMLEmbedder: image_labels have {tags.shape[1]} entries, expected {self.num_classes}")
            return tags[:, 1:].to(self.device)
        return image_tags(labels, self.num_classes)

    def losses(self, images, labels, regions=None, tags=None):
        """
        The stage-A loss dict of normalised images (B, 3, H, W), labels (B, H, W), regions (B, H, W)
        or None, tags (B, K-1) or None.
        """
        K = self.num_classes
        bad = (labels < 0) | (labels > self.ignore_value)
        if bad.any():
            raise ValueError(f"SPMLEmbedder: label values must be 0..{K - 1}, {K}..254 (unlabelled) or 255 (void)")
        if tags is None:
            tags = image_tags(labels, K)
        # pad to the backbone's divisibility so that the embedding is exactly 1/stride of the crop
        div = self.size_divisibility
        images = _pad_to(images, div, 0.0)
        labels = _pad_to(labels, div, self.ignore_value)
        if regions is not None:
            regions = _pad_to(regions, div, 255)
        e = self.embed(images)
        size = e.shape[-2:]
        small_labels = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
        small_regions = None
        if regions is not None:
            small_regions = F.interpolate(regions[:, None].float(), size=size, mode="nearest")[:, 0].long()
        extra = smoothed_color_features(images, tuple(size)) if self.cluster_features == "xy_rgb" else None
        aff = self.setting["feat_aff"]["aff_scale"] if self.feature_affinity else None
        segments = form_segments(
            e, small_labels, K, regions=small_regions, tags=tags, grid=(self.grid_train, self.grid_train),
            iterations=self.kmeans_iterations, unlabeled_as_void=self.unlabeled_as_void,
            extra_cluster_features=extra, ignore_value=self.ignore_value, affinity_scale=aff,
        )
        # auxiliary classifier on the detached unit embedding, logits at the label size
        logits = self.aux_classifier(F.normalize(e.detach(), dim=1))
        ce = cross_entropy_on_labelled(logits, labels, K, self.ignore_value)

        global_fields, offset = gather_segments(segments.fields(), images.shape[0])
        candidates = SPMLCandidates.from_fields(
            append_memory(global_fields, self.memory.fields()), num_current=global_fields["prototypes"].shape[0]
        )
        losses = spml_total_loss(
            segments, candidates, offset, K, self.setting, ce_loss=ce, feature_affinity=self.feature_affinity,
            exact=self.exact, chunk_size=self.chunk_size,
        )
        if "loss_sem_ann" not in losses:  # without (C) the auxiliary head still trains
            losses["loss_ce"] = self.ce_loss_weight * ce
        world, _ = _world()
        self.memory.images_per_batch = images.shape[0] * world
        self.memory.push({k: v for k, v in global_fields.items()})
        return losses

    @torch.no_grad()
    def inference(self, input):
        e, raw = self._inference_embedding(input)
        return _embedding_outputs(e, raw, self.aux_classifier(e), self._output_size(input), self.sem_seg_kind)


@META_ARCH_REGISTRY.register()
class SPMLClassifier(_SPMLEmbedding):
    """
    SPML stage C/T: a fresh classifier on the frozen stage-A embedding. With train_embedding
    (MODEL.SPML.TRAIN_EMBEDDING) the same network trains end to end with the partial cross
    entropy instead: the naive baseline with SPML's backbone and head.
    """

    sem_seg_kind = "logits"

    @configurable
    def __init__(
        self,
        *,
        backbone,
        sem_seg_head,
        num_classes: int,
        pixel_mean,
        pixel_std,
        dropout: float = 0.65,
        classifier_norm: str = "BN",
        ce_loss_weight: float = 1.0,
        ignore_value: int = 255,
        test_image_size: int = 512,
        test_window_size: int = 512,
        train_embedding: bool = False,
        frozen_stages: Sequence[str] = ("stem", "res2"),
    ):
        super().__init__()
        self._init_embedding(backbone, sem_seg_head, pixel_mean, pixel_std, test_image_size, test_window_size)
        self.num_classes = num_classes
        self.classifier = SPMLClassifierHead(sem_seg_head.embed_dim, num_classes, dropout, classifier_norm)
        self.ce_loss_weight = float(ce_loss_weight)
        self.ignore_value = int(ignore_value)
        self.train_embedding = bool(train_embedding)
        if self.train_embedding:
            _freeze_stages(backbone, frozen_stages)
        else:
            for p in list(self.backbone.parameters()) + list(self.sem_seg_head.parameters()):
                p.requires_grad_(False)
        self.train(self.training)

    @classmethod
    def from_config(cls, cfg):
        spml = cfg.MODEL.SPML
        backbone = build_backbone(cfg)
        return {
            "backbone": backbone,
            "sem_seg_head": build_sem_seg_head(cfg, backbone.output_shape()),
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "dropout": spml.CLASSIFIER_DROPOUT,
            "classifier_norm": spml.CLASSIFIER_NORM,
            "ce_loss_weight": spml.CE_LOSS_WEIGHT,
            "ignore_value": cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            "test_image_size": cfg.TEST.SPML.IMAGE_SIZE,
            "test_window_size": cfg.TEST.SPML.WINDOW_SIZE,
            "train_embedding": spml.TRAIN_EMBEDDING,
            "frozen_stages": list(spml.FROZEN_STAGES),
        }

    def train(self, mode: bool = True):
        """A frozen embedding network stays in eval mode (BN running statistics)."""
        super().train(mode)
        if not self.train_embedding:
            self.backbone.eval()
            self.sem_seg_head.eval()
        return self

    def forward(self, batched_inputs):
        if not self.training:
            return [self.inference(x) for x in batched_inputs]
        images = self._normalised_training_images(batched_inputs)
        labels = training_labels(batched_inputs, "SPMLClassifier").to(self.device)
        return self.losses(images, labels)

    def losses(self, images, labels):
        """{"loss_ce": CE of the classifier on the frozen unit embedding}, labels >= K ignored."""
        div = self.size_divisibility
        images = _pad_to(images, div, 0.0)
        labels = _pad_to(labels, div, self.ignore_value)
        with torch.set_grad_enabled(self.train_embedding):
            e = F.normalize(self.embed(images), dim=1)
        logits = self.classifier(e)
        return {"loss_ce": self.ce_loss_weight * cross_entropy_on_labelled(logits, labels, self.num_classes, self.ignore_value)}

    @torch.no_grad()
    def inference(self, input):
        e, raw = self._inference_embedding(input)
        return _embedding_outputs(e, raw, self.classifier(e), self._output_size(input), self.sem_seg_kind)
