"""
MaskFormer for semantic segmentation (META_ARCH_REGISTRY "WSSMaskFormer", docs/maskformer.md): backbone,
WSSMaskFormerHead (pixel decoder + transformer predictor), the set criterion with named loss weights,
and the semantic inference. Training targets are built inside the model from the mapper's `sem_seg`
(one mask target per class present); subclasses build other targets (SimFormer: base masks plus novel
tags) by overriding `image_targets`.

Inference returns {"sem_seg": (K, H, W) Σ_q p_q(c)·σ(m_q) at the image's size, "sem_seg_kind": "scores"}.
"""
import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone, build_sem_seg_head
from detectron2.modeling.postprocessing import sem_seg_postprocess
from detectron2.structures import ImageList

from .criterion import SetCriterion
from .head import WSSMaskFormerHead
from .inference import semantic_inference
from .matcher import HungarianMatcher
from .targets import pad_label_map, semantic_targets

__all__ = ["WSSMaskFormer", "build_matcher"]

# loss-dict names (per layer; auxiliary layers add _0, _1, ...) and the MODEL.MASK_FORMER key weighting each
MASKFORMER_LOSS_WEIGHT_KEYS = {"loss_ce": "CLASS_WEIGHT", "loss_mask": "MASK_WEIGHT", "loss_dice": "DICE_WEIGHT"}


def build_matcher(cfg):
    mf = cfg.MODEL.MASK_FORMER
    return HungarianMatcher(
        mask_target_class_cost=mf.MATCHER.MASK_TARGET_CLASS_COST,
        mask_target_mask_cost=mf.MATCHER.MASK_TARGET_MASK_COST,
        tag_target_class_cost=mf.MATCHER.TAG_TARGET_CLASS_COST,
        tag_target_mask_cost=mf.MATCHER.TAG_TARGET_MASK_COST,
        focal_weight=mf.MASK_WEIGHT,
        dice_weight=mf.DICE_WEIGHT,
    )


def base_loss_name(name):
    """loss_mask_3 -> loss_mask (the auxiliary layers' suffix removed)."""
    head, _, tail = name.rpartition("_")
    return head if tail.isdigit() else name


@META_ARCH_REGISTRY.register()
class WSSMaskFormer(nn.Module):
    sem_seg_kind = "scores"

    @configurable
    def __init__(self, *, backbone, sem_seg_head, criterion, loss_weights, num_classes, ignore_value=255,
                 size_divisibility=32, pixel_mean, pixel_std):
        super().__init__()
        if not isinstance(sem_seg_head, WSSMaskFormerHead):
            raise ValueError(f"{type(self).__name__} needs MODEL.SEM_SEG_HEAD.NAME 'WSSMaskFormerHead', got "
                             f"{type(sem_seg_head).__name__}")
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.criterion = criterion
        self.loss_weights = dict(loss_weights)
        self.num_classes = num_classes
        self.ignore_value = ignore_value
        self.size_divisibility = size_divisibility
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        mf = cfg.MODEL.MASK_FORMER
        return {
            "backbone": backbone,
            "sem_seg_head": build_sem_seg_head(cfg, backbone.output_shape()),
            "criterion": SetCriterion(cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, build_matcher(cfg),
                                      no_object_weight=mf.NO_OBJECT_WEIGHT, deep_supervision=mf.DEEP_SUPERVISION),
            "loss_weights": {name: getattr(mf, key) for name, key in MASKFORMER_LOSS_WEIGHT_KEYS.items()},
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "ignore_value": cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            "size_divisibility": mf.SIZE_DIVISIBILITY,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    def preprocess(self, batched_inputs):
        images = [(x["image"].to(self.device).float() - self.pixel_mean) / self.pixel_std for x in batched_inputs]
        return ImageList.from_tensors(images, self.size_divisibility)

    def forward(self, batched_inputs):
        images = self.preprocess(batched_inputs)
        outputs = self.sem_seg_head(self.backbone(images.tensor))
        if self.training:
            targets = self.prepare_targets(batched_inputs, images)
            losses, _ = self.criterion(outputs, targets)
            return self.weighted(losses)
        return self.inference(outputs, batched_inputs, images)

    def weighted(self, losses):
        """Each loss times its named weight; a loss whose weight is 0 is left out."""
        out = {}
        for name, value in losses.items():
            weight = self.loss_weights[base_loss_name(name)]
            if weight != 0:
                out[name] = value * weight
        return out

    def prepare_targets(self, batched_inputs, images):
        size = images.tensor.shape[-2:]
        targets = []
        for x in batched_inputs:
            if "sem_seg" not in x:
                raise ValueError(f"{type(self).__name__} trains on dense labels: {x.get('file_name', '?')} has no sem_seg")
            label = pad_label_map(x["sem_seg"].to(self.device), size, self.ignore_value)
            target = self.image_targets(x, label)
            target["file_name"] = x.get("file_name", "?")
            targets.append(target)
        return targets

    def image_targets(self, x, label):
        return semantic_targets(label, self.num_classes, self.ignore_value, x.get("file_name", "?"))

    def inference(self, outputs, batched_inputs, images):
        mask_pred = F.interpolate(outputs["pred_masks"], size=images.tensor.shape[-2:], mode="bilinear",
                                  align_corners=False)
        results = []
        for mask_cls, masks, x, image_size in zip(outputs["pred_logits"], mask_pred, batched_inputs, images.image_sizes):
            height, width = x.get("height", image_size[0]), x.get("width", image_size[1])
            sem = semantic_inference(mask_cls, masks)
            results.append({"sem_seg": sem_seg_postprocess(sem, image_size, height, width),
                            "sem_seg_kind": self.sem_seg_kind})
        return results
