"""
The AGMM meta-architecture (docs/agmm.md §2-§4): DeepLabV3+ trained from sparse labels with
partial cross entropy plus adaptive Gaussian-mixture terms built per image from the decoder
feature of the labelled pixels.

Training reads the mapper's `sparse_sem_seg` (0..K-1 labelled, K unlabelled, 255 void;
a dense `sem_seg`, 255 = ignore, gives full supervision) and `image_labels` (the classes of
the whole, un-augmented weak label) and returns
{loss_pce, loss_g2p, loss_l2g, loss_proto, loss_cls}. Inference: softmax probabilities at
the image's size (declared: `sem_seg_kind` "probabilities"; "logits" with TEST_SOFTMAX False);
multi-scale + flip and sliding windows come from wss_d2.inference.tta.
"""
import logging

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone, build_sem_seg_head

from ...modeling.batching import stack_crops
from ...modeling.cam import validated_image_labels
from ...modeling.heads import DeepLabV3PlusFeatureHead
from ...modeling.normalization import normalize_images

from .config import LOSS_NAMES, loss_weight_key
from .gmm import (
    PROTO_CENTERS,
    SIGMA_MODES,
    VOID,
    absent_class_loss,
    centroid_repulsion_loss,
    class_centroids,
    full_resolution_gmm,
    gmm_predictions,
    gmm_to_prediction_loss,
    l1_distances,
    labels_to_gmm_loss,
    partial_cross_entropy,
)

__all__ = ["AGMM"]

logger = logging.getLogger(__name__)


@META_ARCH_REGISTRY.register()
class AGMM(nn.Module):
    """Sparsely annotated segmentation with adaptive Gaussian mixtures (Wu et al., CVPR 2023)."""

    @configurable
    def __init__(
        self,
        *,
        backbone,
        sem_seg_head,
        num_classes,
        enable_gmm=True,
        sigma_mode="fixed",
        proto_center="sum",
        detach_gmm_target=False,
        loss_weights=None,
        test_softmax=True,
        pixel_mean,
        pixel_std,
    ):
        """
        Args:
            sem_seg_head: a DeepLabV3PlusFeatureHead (returns the decoder feature and logits).
            enable_gmm: False trains the partial cross-entropy baseline (loss_pce only).
            sigma_mode, proto_center, detach_gmm_target: the switches of docs/agmm.md §9.5.
            loss_weights: {loss name: weight} for every name of LOSS_NAMES; None: all 1.
            test_softmax: inference returns probabilities (True) or logits.
        """
        super().__init__()
        if sigma_mode not in SIGMA_MODES:
            raise ValueError(f"MODEL.AGMM.SIGMA_MODE must be one of {SIGMA_MODES}, got {sigma_mode!r}")
        if proto_center not in PROTO_CENTERS:
            raise ValueError(f"MODEL.AGMM.PROTO_CENTER must be one of {PROTO_CENTERS}, got {proto_center!r}")
        loss_weights = dict.fromkeys(LOSS_NAMES, 1.0) if loss_weights is None else dict(loss_weights)
        if sorted(loss_weights) != sorted(LOSS_NAMES):
            raise ValueError(f"AGMM loss_weights needs a weight for each of {LOSS_NAMES}, got {sorted(loss_weights)}")
        if not isinstance(sem_seg_head, DeepLabV3PlusFeatureHead):
            raise ValueError(
                "AGMM reads the decoder feature: MODEL.SEM_SEG_HEAD.NAME must be 'DeepLabV3PlusFeatureHead', "
                f"got {type(sem_seg_head).__name__}"
            )
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.num_classes = num_classes
        self.enable_gmm = enable_gmm
        self.sigma_mode = sigma_mode
        self.proto_center = proto_center
        self.detach_gmm_target = detach_gmm_target
        self.loss_weights = loss_weights
        self.test_softmax = test_softmax
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        agmm = cfg.MODEL.AGMM
        return {
            "backbone": backbone,
            "sem_seg_head": build_sem_seg_head(cfg, backbone.output_shape()),
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "enable_gmm": agmm.ENABLE,
            "sigma_mode": agmm.SIGMA_MODE,
            "proto_center": agmm.PROTO_CENTER,
            "detach_gmm_target": agmm.DETACH_GMM_TARGET,
            "loss_weights": {name: agmm[loss_weight_key(name)] for name in LOSS_NAMES},
            "test_softmax": agmm.TEST_SOFTMAX,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    @property
    def sem_seg_kind(self):
        """What `sem_seg` holds (wss_d2.inference.scores): probabilities or logits."""
        return "probabilities" if self.test_softmax else "logits"

    def network(self, images):
        """Decoder feature F (B, 256, h, w) at stride 4 and logits at the input size."""
        return self.sem_seg_head(self.backbone(images), images.shape[-2:])

    def forward(self, batched_inputs):
        if not self.training:
            return [self.inference(x) for x in batched_inputs]
        images = stack_crops(batched_inputs, "image").to(self.device)
        labels = torch.stack([self._training_label(x) for x in batched_inputs]).to(self.device)
        if "image_labels" in batched_inputs[0]:
            image_labels = torch.stack(
                [validated_image_labels(x, self.num_classes, "AGMM") for x in batched_inputs]
            )
        else:  # dense supervision: the classes of the label itself
            image_labels = F.one_hot(labels.clamp(max=self.num_classes), self.num_classes + 1)[..., :-1]
            image_labels = image_labels.flatten(1, 2).amax(dim=1)
        feature, logits = self.network(normalize_images(images, self.pixel_mean, self.pixel_std))
        return self.losses(feature, logits, labels, image_labels.to(self.device).float())

    def _training_label(self, x):
        if "sparse_sem_seg" in x:
            return x["sparse_sem_seg"]
        if "sem_seg" in x:  # full supervision: every pixel labelled, 255 void
            return x["sem_seg"]
        raise KeyError(
            f"AGMM trains on sparse labels ('sparse_sem_seg') or dense ones ('sem_seg'); "
            f"{x.get('file_name', '?')} has neither"
        )

    def losses(self, feature, logits, labels, image_labels):
        """The five terms of docs/agmm.md §4 for a batch; labels (B, H, W) internal,
        image_labels (B, K)."""
        K = self.num_classes
        if ((labels > K) & (labels != VOID)).any():
            raise ValueError(f"AGMM: label values must be 0..{K - 1}, {K} (unlabelled) or {VOID} (void)")
        losses = {"loss_pce": partial_cross_entropy(logits, labels, K)}
        if not (labels < K).any():
            logger.warning("AGMM: a batch without labelled pixels; loss_pce and loss_l2g are 0")
        if self.enable_gmm:
            losses.update(self.gmm_losses(feature, logits, labels, image_labels))
        return {name: loss * self.loss_weights[name] for name, loss in losses.items()}

    def gmm_losses(self, feature, logits, labels, image_labels):
        K = self.num_classes
        probabilities = F.softmax(logits, dim=1)
        valid = labels != VOID
        centroids, present = class_centroids(feature, labels, K)  # a: crop-level presence
        distances = l1_distances(feature, centroids)
        valid_small = F.interpolate(valid[:, None].float(), size=feature.shape[-2:], mode="bilinear",
                                    align_corners=False)[:, 0]
        small_probabilities = None
        if self.sigma_mode == "adaptive":
            small_probabilities = F.interpolate(probabilities, size=feature.shape[-2:], mode="bilinear",
                                                align_corners=False)
        g = gmm_predictions(distances, present, valid_small, self.sigma_mode, small_probabilities, image_labels)
        gmm = full_resolution_gmm(g, present, labels.shape[-2:])
        target = gmm.detach() if self.detach_gmm_target else gmm
        return {
            "loss_g2p": gmm_to_prediction_loss(probabilities, target, present, valid),
            "loss_l2g": labels_to_gmm_loss(gmm, labels, present, K),
            "loss_proto": centroid_repulsion_loss(centroids, present, self.proto_center),
            "loss_cls": absent_class_loss(probabilities, image_labels, valid),
        }

    @torch.no_grad()
    def inference(self, input):
        """Scores of one image at (height, width): probabilities (TEST_SOFTMAX) or logits."""
        image = input["image"].to(self.device)[None]
        _, logits = self.network(normalize_images(image, self.pixel_mean, self.pixel_std))
        height, width = input.get("height", image.shape[-2]), input.get("width", image.shape[-1])
        scores = F.softmax(logits, dim=1) if self.test_softmax else logits
        if tuple(scores.shape[-2:]) != (height, width):
            scores = self.sem_seg_head.upsample(scores, (height, width))
        return {"sem_seg": scores[0], "sem_seg_kind": self.sem_seg_kind}
