"""
SimFormer (META_ARCH_REGISTRY "SimFormer", docs/simformer.md): weak-shot semantic segmentation on
MaskFormer. Base classes have pixel masks, novel classes only image tags.

Training inputs (the weak-label mapper on a weak-shot set): `sem_seg` with novel pixels 255,
`image_labels` (the novel tags: the crop's with INPUT.WEAK.TAGS_FROM_CROP, the image's otherwise),
`valid_mask` (crop padding), with INPUT.PAIRS a "partner" image, and with
MODEL.SIMFORMER.BALANCE_COUNTS "full_label" the crop's full label map "full_sem_seg" (read only for
the similarity loss's class-balance counts). Per image the targets are the base classes present
(mask targets, ascending) then the novel tags (tag targets, empty masks, ascending).

Losses (each weighted by its named key; 0 leaves it out):
  loss_ce, loss_mask, loss_dice    MaskFormer's, every decoder layer (MODEL.MASK_FORMER.*_WEIGHT)
  loss_comp                        complementary loss, every decoder layer (COMP_LOSS_WEIGHT)
  loss_sim                         similarity net on base-point pairs across each pair (SIM_LOSS_WEIGHT)
  loss_distill                     similarity distilled into the novel scores (DISTILL_LOSS_WEIGHT)
Inference is MaskFormer's (sem_seg_kind "scores"), without image tags.
"""
import logging

import torch
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY

from ...modeling.maskformer import SetCriterion, WSSMaskFormer, build_matcher, pad_label_map
from ...modeling.maskformer.meta_arch import MASKFORMER_LOSS_WEIGHT_KEYS
from .config import BALANCE_COUNTS, DISTILL_TARGETS, SIMFORMER_LOSS_WEIGHT_KEYS, STUDENT_PAIRINGS
from .losses import (
    SimilarityNet,
    balanced_similarity_loss,
    complementary_loss,
    distill_loss,
    gather_points,
    pair_cosine,
    pair_features,
    sample_in_region,
    student_scores,
)

__all__ = ["SimFormer", "SimFormerCriterion", "check_weak_shot_split"]

logger = logging.getLogger(__name__)


class SimFormerCriterion(SetCriterion):
    """
    MaskFormer's set criterion plus the complementary loss on every layer; holds the similarity net
    and the class-balance queues (module names as the original's, so its checkpoints load).
    """

    def __init__(self, num_classes, matcher, *, no_object_weight, deep_supervision, ignore_logit, focal_weight,
                 dice_weight, comp_loss=True, simnet=None, balance_queue=25):
        super().__init__(num_classes, matcher, no_object_weight, deep_supervision)
        # the constant "ignore proposal" logit τ (the original's name, sic); not trained
        self.ingore_th = torch.nn.Parameter(torch.tensor(float(ignore_logit)), requires_grad=False)
        self.focal_weight = focal_weight
        self.dice_weight = dice_weight
        self.comp_loss = comp_loss
        if simnet is not None:
            self.cro_pixel_sim_net = simnet
        self.balance_queue = balance_queue
        self.positive_counts, self.negative_counts = [1.0], [1.0]

    def layer_losses(self, outputs, targets, indices, num_masks):
        losses = super().layer_losses(outputs, targets, indices, num_masks)
        if self.comp_loss:
            losses["loss_comp"] = self.loss_comp(outputs, targets, indices)
        return losses

    def loss_comp(self, outputs, targets, indices):
        """Σ over images with novel targets of the complementary loss / (their number + 1e-5)."""
        masks = outputs["pred_masks"]
        total, count = masks.sum() * 0.0, 0
        for b, (query, target) in enumerate(indices):
            tag = ~targets[b]["has_mask"][target].to(query.device)
            if not tag.any():
                continue
            size = targets[b]["masks"].shape[-2:]
            logits = F.interpolate(masks[b, query[tag]][None], size=size, mode="bilinear", align_corners=False)[0]
            base = targets[b]["masks"][targets[b]["has_mask"]]
            covered = base.any(0) if len(base) else torch.zeros(size, dtype=torch.bool, device=masks.device)
            not_base = ~covered & ~targets[b]["pad"]
            total = total + complementary_loss(logits, not_base, float(self.ingore_th), self.focal_weight, self.dice_weight)
            count += 1
        return total / (count + 1e-5)

    def balance_weights(self, positives, negatives):
        """Push this iteration's counts (before computing), return (w_pos, w_neg) from the queues' sums."""
        self.positive_counts = (self.positive_counts + [float(positives)])[-self.balance_queue:]
        self.negative_counts = (self.negative_counts + [float(negatives)])[-self.balance_queue:]
        n_pos, n_neg = sum(self.positive_counts), sum(self.negative_counts)
        return n_neg / (n_pos + n_neg), n_pos / (n_pos + n_neg)


def check_weak_shot_split(dataset_name, num_classes):
    """The novel classes of `dataset_name`'s weak-shot split; a clear error when its base and novel lists
    overlap or leave out a class."""
    meta = MetadataCatalog.get(dataset_name)
    novel = list(meta.get("novel_classes", None) or ())
    base = meta.get("base_classes", None)
    if base is not None and novel:
        overlap = sorted(set(base) & set(novel))
        missing = sorted(set(range(num_classes)) - set(base) - set(novel))
        extra = sorted((set(base) | set(novel)) - set(range(num_classes)))
        if overlap or missing or extra:
            raise ValueError(
                f"Weak-shot split of {dataset_name}: base and novel classes must split 0..{num_classes - 1}; "
                + "; ".join(msg for msg in (f"in both lists: {overlap}" if overlap else "",
                                            f"in neither list: {missing}" if missing else "",
                                            f"not class ids: {extra}" if extra else "") if msg)
            )
    return novel


def _nearest(label, size):
    """A label map (B, H, W) resized by PyTorch's "nearest" (stride 4: pixels 0, 4, 8, ...)."""
    return F.interpolate(label[:, None].float(), size=size, mode="nearest")[:, 0].long()


@META_ARCH_REGISTRY.register()
class SimFormer(WSSMaskFormer):
    @configurable
    def __init__(self, *, novel_classes, loss_weights, sim_weight=0.0, distill_weight=0.0,
                 distill_func="ce", distill_to="NovelScore", student_pairing="official_intra", sim_detach=True,
                 teacher_detach=True, base_points=100, positive_fraction=0.8, novel_points=100,
                 distill_points_on_padding=True, balance_counts="full_label", balance_stride=5, **kwargs):
        super().__init__(loss_weights=loss_weights, **kwargs)
        if distill_to not in DISTILL_TARGETS:
            raise ValueError(f"MODEL.SIMFORMER.DISTILL_TO must be one of {DISTILL_TARGETS}, got {distill_to!r}")
        if student_pairing not in STUDENT_PAIRINGS:
            raise ValueError(f"MODEL.SIMFORMER.STUDENT_PAIRING must be one of {STUDENT_PAIRINGS}, got {student_pairing!r}")
        if balance_counts not in BALANCE_COUNTS:
            raise ValueError(f"MODEL.SIMFORMER.BALANCE_COUNTS must be one of {BALANCE_COUNTS}, got {balance_counts!r}")
        if distill_weight and not sim_weight:
            raise ValueError("MODEL.SIMFORMER.DISTILL_LOSS_WEIGHT needs the similarity net, i.e. SIM_LOSS_WEIGHT > 0 "
                             "(the teacher is the net that loss trains)")
        distill_loss(torch.zeros(1), torch.zeros(1), distill_func)  # a clear error for an unknown function now
        if len(novel_classes) == 0:
            raise ValueError("SimFormer needs the novel classes: train on a weak-shot set (metadata novel_classes, "
                             "e.g. wss_synthetic_train_ws, coco_stuff_10k_train_ws_split1)")
        self.register_buffer("novel_classes", torch.as_tensor(sorted(novel_classes), dtype=torch.int64), False)
        self.sim_weight, self.distill_weight = sim_weight, distill_weight
        self.distill_func, self.distill_to, self.student_pairing = distill_func, distill_to, student_pairing
        self.sim_detach, self.teacher_detach = sim_detach, teacher_detach
        self.base_points, self.novel_points = base_points, novel_points
        self.positive_points = int(positive_fraction * base_points)
        self.distill_points_on_padding = distill_points_on_padding
        self.balance_counts, self.balance_stride = balance_counts, balance_stride
        self.needs_pairs = bool(sim_weight or distill_weight)
        self.sem_seg_head.return_pixel_features = self.needs_pairs
        if self.needs_pairs and balance_counts == "full_label":
            logger.info("SimFormer: the similarity loss's class-balance counts read the full labels, novel pixels "
                        "included (MODEL.SIMFORMER.BALANCE_COUNTS full_label, the original's); nothing else does")

    @classmethod
    def from_config(cls, cfg):
        args = super().from_config(cfg)
        sf, mf = cfg.MODEL.SIMFORMER, cfg.MODEL.MASK_FORMER
        needs_pairs = bool(sf.SIM_LOSS_WEIGHT or sf.DISTILL_LOSS_WEIGHT)
        if needs_pairs and not cfg.INPUT.PAIRS.ENABLED:
            raise ValueError("MODEL.SIMFORMER.SIM_LOSS_WEIGHT / DISTILL_LOSS_WEIGHT are pair losses: they need "
                             "INPUT.PAIRS.ENABLED True (a single-image mapper would pair unrelated images)")
        if needs_pairs and sf.BALANCE_COUNTS == "full_label" and not cfg.INPUT.WEAK.KEEP_FULL_LABEL:
            raise ValueError("MODEL.SIMFORMER.BALANCE_COUNTS 'full_label' reads the full labels: set "
                             "INPUT.WEAK.KEEP_FULL_LABEL True, or use BALANCE_COUNTS 'base_only' (no novel pixel label)")
        num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
        simnet = None
        if sf.SIM_LOSS_WEIGHT:
            simnet = SimilarityNet(2 * cfg.MODEL.SEM_SEG_HEAD.MASK_DIM, sf.SIMNET.HIDDEN_DIM, sf.SIMNET.NUM_BLOCKS,
                                   sf.SIMNET.BATCH_NORM)
        args["criterion"] = SimFormerCriterion(
            num_classes, build_matcher(cfg), no_object_weight=mf.NO_OBJECT_WEIGHT,
            deep_supervision=mf.DEEP_SUPERVISION, ignore_logit=sf.IGNORE_LOGIT, focal_weight=mf.MASK_WEIGHT,
            dice_weight=mf.DICE_WEIGHT, comp_loss=sf.COMP_LOSS_WEIGHT != 0, simnet=simnet,
            balance_queue=sf.BALANCE_QUEUE,
        )
        weights = {name: getattr(mf, key) for name, key in MASKFORMER_LOSS_WEIGHT_KEYS.items()}
        weights.update({name: getattr(sf, key) for name, key in SIMFORMER_LOSS_WEIGHT_KEYS.items()})
        names = list(cfg.DATASETS.TRAIN) or list(cfg.DATASETS.TEST)
        novel = check_weak_shot_split(names[0], num_classes) if names else ()
        args.update(
            loss_weights=weights, novel_classes=list(novel or ()),
            sim_weight=sf.SIM_LOSS_WEIGHT, distill_weight=sf.DISTILL_LOSS_WEIGHT, distill_func=sf.DISTILL_FUNC,
            distill_to=sf.DISTILL_TO, student_pairing=sf.STUDENT_PAIRING, sim_detach=sf.SIM_DETACH,
            teacher_detach=sf.TEACHER_DETACH, base_points=sf.BASE_POINTS, positive_fraction=sf.POSITIVE_FRACTION,
            novel_points=sf.NOVEL_POINTS, distill_points_on_padding=sf.DISTILL_POINTS_ON_PADDING,
            balance_counts=sf.BALANCE_COUNTS, balance_stride=sf.BALANCE_STRIDE,
        )
        return args

    # ------------------------------------------------------------------------------ targets
    def image_targets(self, x, label):
        """Mask targets: the base classes in `label` (novel pixels are 255); tag targets: the novel tags."""
        file_name = x.get("file_name", "?")
        classes = torch.unique(label)
        classes = classes[classes != self.ignore_value]
        bad = classes[(classes < 0) | (classes >= self.num_classes) | torch.isin(classes, self.novel_classes)]
        if len(bad):
            raise ValueError(f"{file_name}: label values {bad.tolist()} in the base-class map are not base class ids "
                             "(novel pixels must be hidden: train on a weak-shot set)")
        if "image_labels" not in x:
            raise ValueError(f"{file_name} has no image_labels: SimFormer's novel classes come from image tags")
        tags = torch.nonzero(x["image_labels"].to(self.device) > 0).flatten()
        novel = tags[torch.isin(tags, self.novel_classes)]
        masks = torch.cat([label[None] == classes[:, None, None],
                           torch.zeros((len(novel),) + label.shape, dtype=torch.bool, device=label.device)])
        has_mask = torch.cat([torch.ones(len(classes), dtype=torch.bool), torch.zeros(len(novel), dtype=torch.bool)])
        valid = x.get("valid_mask", torch.ones(x["sem_seg"].shape, dtype=torch.bool)).to(self.device)
        target = {"labels": torch.cat([classes, novel]), "masks": masks, "has_mask": has_mask.to(self.device),
                  "pad": ~pad_label_map(valid.long(), label.shape, 0).bool(), "label": label}
        if self.needs_pairs and self.balance_counts == "full_label":
            if "full_sem_seg" not in x:
                raise ValueError(f"{file_name} has no full_sem_seg: BALANCE_COUNTS 'full_label' needs "
                                 "INPUT.WEAK.KEEP_FULL_LABEL True")
            target["full_label"] = pad_label_map(x["full_sem_seg"].to(self.device), label.shape, self.ignore_value)
        return target

    # ------------------------------------------------------------------------------ forward
    def forward(self, batched_inputs):
        if not self.training:
            return super().forward(batched_inputs)
        paired = any("partner" in x for x in batched_inputs)
        if paired and not all("partner" in x for x in batched_inputs):
            raise ValueError("Some training inputs have a partner and some do not: INPUT.PAIRS gives every image one")
        if self.needs_pairs and not paired:
            raise ValueError("SimFormer's similarity and distillation losses need image pairs: the inputs have no "
                             "'partner' (set INPUT.PAIRS.ENABLED True)")
        inputs = [y for x in batched_inputs for y in ((x, x["partner"]) if paired else (x,))]
        images = self.preprocess(inputs)
        outputs = self.sem_seg_head(self.backbone(images.tensor))
        targets = self.prepare_targets(inputs, images)
        losses, _ = self.criterion(outputs, targets)
        if self.needs_pairs:
            losses.update(self.pair_losses(outputs, targets))
        return self.weighted(losses)

    # ------------------------------------------------------------------------------ pairs
    def pair_losses(self, outputs, targets):
        """loss_sim (and loss_distill) averaged over the pairs (images 2p, 2p+1) of this batch."""
        embeddings = outputs["pixel_features"]
        size = embeddings.shape[-2:]
        labels = _nearest(torch.stack([t["label"] for t in targets]), size)
        pads = _nearest(torch.stack([t["pad"] for t in targets]).long(), size).bool()
        full = None
        if self.balance_counts == "full_label":
            full = _nearest(torch.stack([t["full_label"] for t in targets]), size)
        base_idx = self.sample_base_points(labels, pads, targets)
        sim_total, positives, negatives = [], 0, 0
        pair_items = []
        for p in range(len(targets) // 2):
            a, b = 2 * p, 2 * p + 1
            same, valid, counts = self.pair_relations(labels, full, base_idx, a, b)
            positives, negatives = positives + counts[0], negatives + counts[1]
            pair_items.append((a, b, same, valid))
        w_pos, w_neg = self.criterion.balance_weights(positives, negatives)
        simnet = self.criterion.cro_pixel_sim_net
        sim_embeddings = embeddings.detach() if self.sim_detach else embeddings
        points = gather_points(sim_embeddings, base_idx)  # (B, K_b, C)
        for a, b, same, valid in pair_items:
            # one similarity-net call per pair: its BatchNorm sees one pair, as on one GPU of the original
            scores = simnet(torch.cat([pair_features(points[a], points[b]), pair_features(points[b], points[a])]))
            sim_total.append(balanced_similarity_loss(scores, same, valid, w_pos, w_neg))
        losses = {"loss_sim": torch.stack(sim_total).mean()}
        if self.distill_weight:
            losses["loss_distill"] = self.distillation(outputs, targets, labels, pads, sim_embeddings, simnet)
        return losses

    def sample_base_points(self, labels, pads, targets):
        """(B, K_b) flat indices: K_b·POSITIVE_FRACTION on one base class common to the pair (else any base
        pixel), the rest on non-padding pixels outside that region."""
        base = labels != self.ignore_value
        positive = base.clone()
        for p in range(len(targets) // 2):
            pair = (2 * p, 2 * p + 1)
            common = [set(targets[i]["labels"][targets[i]["has_mask"]].tolist()) for i in pair]
            common = sorted(common[0] & common[1])
            if common:
                c = common[int(torch.randint(len(common), (1,)))]
                for i in pair:
                    positive[i] = labels[i] == c
        flat_pos, flat_neg = positive.flatten(1), (~pads & ~positive).flatten(1)
        return torch.cat([sample_in_region(flat_pos, self.positive_points),
                          sample_in_region(flat_neg, self.base_points - self.positive_points)], dim=1)

    def pair_relations(self, labels, full, indices, a, b):
        """same-class targets and validity of the pairs (a's points × b's, then b's × a's), and the
        (positive, negative) counts on the BALANCE_STRIDE sub-grid."""
        flat = labels.flatten(1)
        y = [flat[i].gather(0, indices[i]) for i in (a, b)]
        is_base = [v != self.ignore_value for v in y]
        same = torch.stack([y[0][:, None] == y[1][None], y[1][:, None] == y[0][None]])
        valid = torch.stack([is_base[0][:, None] | is_base[1][None], is_base[1][:, None] | is_base[0][None]])
        s = self.balance_stride
        if self.balance_counts == "full_label":
            f = full.flatten(1)
            yf = [f[i].gather(0, indices[i]) for i in (a, b)]
            counted = torch.stack([yf[0][::s, None] == yf[1][None, ::s], yf[1][::s, None] == yf[0][None, ::s]])
            positives, negatives = int(counted.sum()), int((~counted).sum())
        else:
            sub_same, sub_valid = same[:, ::s, ::s], valid[:, ::s, ::s]
            if self.balance_counts == "valid_pairs":
                positives, negatives = int((sub_same & sub_valid).sum()), int((~sub_same & sub_valid).sum())
            else:
                positives, negatives = int(sub_same.sum()), int((~sub_same).sum())
        return same, valid, (positives, negatives)

    def distillation(self, outputs, targets, labels, pads, embeddings, simnet):
        """loss_distill averaged over the pairs; a pair whose crops share no novel tag contributes 0."""
        region = labels == self.ignore_value
        if not self.distill_points_on_padding:
            region = region & ~pads
        idx = sample_in_region(region.flatten(1), self.novel_points)
        student = student_scores(outputs["pred_logits"], outputs["pred_masks"], self.distill_to, self.novel_classes)
        student_points = gather_points(student, idx)  # (B, K_n, D)
        teacher_points = gather_points(embeddings, idx)
        total = outputs["pred_masks"].sum() * 0.0
        num_pairs = len(targets) // 2
        for p in range(num_pairs):
            a, b = 2 * p, 2 * p + 1
            tags = [set(targets[i]["labels"][~targets[i]["has_mask"]].tolist()) for i in (a, b)]
            if not tags[0] & tags[1]:
                continue
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.teacher_detach):
                teacher = simnet(torch.cat([pair_features(teacher_points[a], teacher_points[b]),
                                            pair_features(teacher_points[b], teacher_points[a])]))
            partner = {a: b, b: a}
            terms = []
            for i in (a, b):
                other = i if self.student_pairing == "official_intra" else partner[i]
                terms.append(pair_cosine(student_points[i], student_points[other]))
            total = total + distill_loss(torch.stack(terms), teacher, self.distill_func)
        return total / max(num_pairs, 1)
