"""
The SIPE meta-architecture (docs/sipe.md §2-§5): a ResNet classifier whose CAM, turned into seeds
by structure-aware IoU, gives image-specific prototypes on a hierarchical side feature; the
prototypes' cosine maps (IS-CAM) are trained to agree with the CAM (GSC loss).

Training: batched crops with `image`, `valid_mask` and `image_labels` (tags) from
WeakLabelDatasetMapper; returns {"loss_cls", "loss_gsc"}.
Inference: one image at its original size; multi-scale + flip inside the network (docs/sipe.md §5);
returns "cams" (len(keys), H, W) with "cam_labels" = keys (background first, then the
image's classes; or the plain CAM's foreground maps with MODEL.SIPE.TEST_OUTPUT "cam") and
"sem_seg" (num_classes, H, W) scores for the mIoU evaluator: non-negative max-normalised maps,
declared as `sem_seg_kind` "scores" (probabilities = maps / their per-pixel sum).
"""
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone

from ...modeling.batching import stack_crops
from ...modeling.cam import (
    EPS,
    cams_to_class_scores,
    foreground_tags,
    fuse_flip,
    multi_scale_cams,
    normalized_cams,
    resize_bicubic,
)
from ...modeling.normalization import normalize_images

from .equations import (
    gsc_loss,
    hierarchical_feature,
    image_specific_cams,
    image_specific_prototypes,
    structure_aware_seeds,
)

__all__ = ["SIPE", "resize_bicubic", "image_tags"]

SEED_FEATURES = ("res5", "hier")
TEST_OUTPUTS = ("is_cam", "cam")


def image_tags(batched_inputs, num_classes, background_class, device):
    """(N, K) foreground tags from the mapper's (num_classes,) `image_labels` (wss_d2.modeling.cam)."""
    return foreground_tags(batched_inputs, num_classes, background_class, "SIPE", device)


@META_ARCH_REGISTRY.register()
class SIPE(nn.Module):
    """Self-supervised Image-specific Prototype Exploration (Chen et al., CVPR 2022)."""

    # sem_seg holds max-normalised (IS-)CAMs, not logits (wss_d2.inference.scores)
    sem_seg_kind = "scores"

    @configurable
    def __init__(
        self,
        *,
        backbone,
        num_classes,
        background_class=0,
        side_channels=(128, 128, 256, 256),
        side_features=("res2", "res3", "res4", "res5"),
        detach_backbone_at="res3",
        background_weight=0.5,
        seed_feature_train="res5",
        seed_feature_test="hier",
        cls_loss_weight=1.0,
        gsc_loss_weight=1.0,
        test_scales=(1.0, 0.5, 1.5, 2.0),
        test_flip=True,
        test_output="is_cam",
        cam_background_score=0.15,
        pixel_mean,
        pixel_std,
    ):
        """
        Args:
            backbone: returns `side_features` (the last one is the classifier's input).
            num_classes: classes including the background (K + 1).
            side_channels: output channels of the 1x1 side convs, one per side feature.
            detach_backbone_at: stage whose output is detached before the next one ("res3":
                stem..res3 never train, docs/sipe.md §2.2); "" for none (training from scratch).
            background_weight: α, the factor of the background IoU in seed locating.
            seed_feature_train / seed_feature_test: "res5" or "hier" (F_h), docs/sipe.md §3.2.
            test_scales, test_flip: the multi-scale + flip protocol of docs/sipe.md §5.
            test_output: "is_cam" (SIPE) or "cam" (the plain CAM baseline, foreground maps).
            cam_background_score: constant background score of sem_seg with test_output "cam"
                (its maps have no background channel).
        """
        super().__init__()
        for name, value, choices in (
            ("seed_feature_train", seed_feature_train, SEED_FEATURES),
            ("seed_feature_test", seed_feature_test, SEED_FEATURES),
            ("test_output", test_output, TEST_OUTPUTS),
        ):
            if value not in choices:
                raise ValueError(f"SIPE: {name} must be one of {choices}, got {value!r}")
        if len(side_channels) != len(side_features):
            raise ValueError(f"SIPE: {len(side_channels)} side channels for {len(side_features)} side features")
        if not 0 <= background_class < num_classes:
            raise ValueError(f"SIPE: background_class {background_class} outside 0..{num_classes - 1}")
        shapes = backbone.output_shape()
        missing = [f for f in side_features if f not in shapes]
        if missing:
            raise ValueError(f"SIPE: the backbone does not output {missing} (MODEL.RESNETS.OUT_FEATURES)")
        self.backbone = backbone
        self.side_features = tuple(side_features)
        self.detach_backbone_at = detach_backbone_at
        self.num_classes = num_classes
        self.background_class = background_class
        # all new layers: 1x1 convs, no bias, PyTorch's default init (docs/sipe.md §2.3)
        self.sides = nn.ModuleList(
            nn.Conv2d(shapes[f].channels, c, 1, bias=False) for f, c in zip(side_features, side_channels)
        )
        self.classifier = nn.Conv2d(shapes[side_features[-1]].channels, num_classes - 1, 1, bias=False)
        self.background_weight = background_weight
        self.seed_feature_train = seed_feature_train
        self.seed_feature_test = seed_feature_test
        self.cls_loss_weight = cls_loss_weight
        self.gsc_loss_weight = gsc_loss_weight
        self.test_scales = tuple(test_scales)
        self.test_flip = test_flip
        self.test_output = test_output
        self.cam_background_score = cam_background_score
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        # label value of each foreground channel (the classifier's channel c is class fg[c])
        self.register_buffer(
            "foreground_labels", torch.tensor([c for c in range(num_classes) if c != background_class]), False
        )

    @classmethod
    def from_config(cls, cfg):
        sipe = cfg.MODEL.SIPE
        return {
            "backbone": build_backbone(cfg),
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "background_class": sipe.BACKGROUND_CLASS,
            "side_channels": tuple(sipe.SIDE_CHANNELS),
            "side_features": tuple(sipe.SIDE_FEATURES),
            "detach_backbone_at": sipe.DETACH_BACKBONE_AT,
            "background_weight": sipe.BG_IOU_SCALE,
            "seed_feature_train": sipe.SEED_FEATURE_TRAIN,
            "seed_feature_test": sipe.SEED_FEATURE_TEST,
            "cls_loss_weight": sipe.CLS_LOSS_WEIGHT,
            "gsc_loss_weight": sipe.GSC_LOSS_WEIGHT,
            "test_scales": tuple(cfg.TEST.SIPE.SCALES),
            "test_flip": cfg.TEST.SIPE.FLIP,
            "test_output": sipe.TEST_OUTPUT,
            "cam_background_score": sipe.CAM_BACKGROUND_SCORE,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    # ----------------------------------------------------------------------- network
    def _backbone_features(self, images):
        """Backbone features with the stage `detach_backbone_at` cut from the graph
        (docs/sipe.md §2.2)."""
        if not self.detach_backbone_at:
            return self.backbone(images)
        if self.detach_backbone_at not in self.backbone.stage_names:
            raise ValueError(f"SIPE: cannot detach at {self.detach_backbone_at!r}; stages: {self.backbone.stage_names}")
        # detectron2's ResNet.forward with one detach; stages after it keep their gradients
        outputs = {}
        x = self.backbone.stem(images)
        if "stem" in self.backbone._out_features:
            outputs["stem"] = x
        for name, stage in zip(self.backbone.stage_names, self.backbone.stages):
            x = stage(x)
            if name in self.backbone._out_features:
                outputs[name] = x
            if name == self.detach_backbone_at:
                x = x.detach()
        return outputs

    def _network(self, images):
        """Raw CAM logits (N, K, h, w), F_h (N, D, h, w) and the last feature x5 (docs/sipe.md
        §2.3-§3.1)."""
        features = self._backbone_features(images)
        x5 = features[self.side_features[-1]]
        logits = self.classifier(x5)
        # side branches see detached features: IS-CAM gradients never reach the backbone
        sides = [conv(features[f].detach()) for conv, f in zip(self.sides, self.side_features)]
        hier = hierarchical_feature(sides, logits.shape[-2:])
        return logits, hier, x5

    def normalize(self, images, valid_mask=None):
        # padding becomes 0 (docs/sipe.md §4.3)
        return normalize_images(images, self.pixel_mean, self.pixel_std, valid_mask)

    # ----------------------------------------------------------------------- training
    def forward(self, batched_inputs):
        if not self.training:
            return [self.inference(x) for x in batched_inputs]
        images = stack_crops(batched_inputs, "image")
        valid = stack_crops(batched_inputs, "valid_mask").float()
        images = self.normalize(images, valid)
        tags = image_tags(batched_inputs, self.num_classes, self.background_class, self.device)
        return self.losses(*self._network(images), tags, valid.to(self.device))

    def losses(self, logits, hier, x5, tags, valid):
        """L_cls + L_gsc (docs/sipe.md §3.5) for a batch; `valid` (N, H, W) the crop-validity mask."""
        n, k, h, w = logits.shape
        scores = logits.mean(dim=(2, 3))  # GAP of raw logits, padding included (docs/sipe.md §11.9)
        loss_cls = F.multilabel_soft_margin_loss(scores, tags)
        # V at stride 16 by legacy nearest: the top-left pixel of each cell (docs/sipe.md §4.4)
        valid = F.interpolate(valid[:, None], size=(h, w), mode="nearest")
        mask = valid * torch.cat([torch.ones_like(tags[:, :1]), tags], dim=1)[:, :, None, None]
        cams = normalized_cams(logits) * mask  # masked before seed locating (docs/sipe.md §11.8)
        seed_feature = x5 if self.seed_feature_train == "res5" else hier
        seeds, _ = structure_aware_seeds(cams, seed_feature, mask, self.background_weight)
        is_cams = image_specific_cams(hier, image_specific_prototypes(seeds, hier))
        loss_gsc = gsc_loss(cams, is_cams)
        return {"loss_cls": self.cls_loss_weight * loss_cls, "loss_gsc": self.gsc_loss_weight * loss_gsc}

    # ----------------------------------------------------------------------- inference
    @torch.no_grad()
    def inference(self, input):
        """Multi-scale + flip localisation maps of one image (docs/sipe.md §5), at its original size."""
        tags = image_tags([input], self.num_classes, self.background_class, self.device)[0]
        total = multi_scale_cams(
            input["image"],
            self.test_scales,
            lambda resized: self._scale_maps(self.normalize(resized[None]), tags),
            resize=resize_bicubic,
            eps=EPS,
        )[0]

        present = self.foreground_labels[tags > 0]
        if self.test_output == "is_cam":
            keys = torch.cat([torch.tensor([self.background_class], device=self.device), present])
            cams = total[torch.cat([torch.zeros(1, dtype=torch.long, device=self.device), 1 + (tags > 0).nonzero()[:, 0]])]
        else:
            keys, cams = present, total[(tags > 0).nonzero()[:, 0]]
        # the plain CAM has no background channel: MODEL.SIPE.CAM_BACKGROUND_SCORE stands in for it
        sem_seg = cams_to_class_scores(
            cams, keys, self.num_classes, self.background_class, self.cam_background_score
        )
        return {"cams": cams, "cam_labels": keys, "sem_seg": sem_seg, "sem_seg_kind": self.sem_seg_kind}

    def _scale_maps(self, image, tags):
        """
        (1, K+1, h, w) unnormalised IS-CAM of one scale (or, for the plain CAM, (1, K, h, w)
        ReLU logits), with the flip fused inside: raw logits and F_h of the image and its
        mirror are summed before any ReLU, normalisation or seed locating (docs/sipe.md §11.16).
        """
        batch = torch.cat([image, image.flip(-1)]) if self.test_flip else image
        logits, hier, x5 = self._network(batch)
        if self.test_flip:
            logits, hier, x5 = (fuse_flip(t, "sum") for t in (logits, hier, x5))
        if self.test_output == "cam":
            return F.relu(logits)
        cams = normalized_cams(logits)  # no label masking at inference (docs/sipe.md §11.8)
        label_mask = torch.cat([torch.ones(1, device=self.device), tags])[None]
        seed_feature = hier if self.seed_feature_test == "hier" else x5
        seeds, _ = structure_aware_seeds(cams, seed_feature, label_mask, self.background_weight)
        return image_specific_cams(hier, image_specific_prototypes(seeds, hier))
