"""
IRN's boundary branch as a meta-architecture (docs/sipe.md §7.2): a frozen ImageNet ResNet whose
detached features feed a small edge head; trained from confident-region labels (0 = bg,
c = class, 255 = uncertain) with the inter-pixel affinity loss; at inference it propagates an
image's CAMs (from a `cam_file_name`, e.g. SIPE's IS-CAM) by random walk into a dense label
map. Reusable by every CAM method: give it CAMs with or without a background channel.
"""
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone

from ...modeling.batching import stack_crops
from ...modeling.cam import cams_to_class_scores
from ...modeling.normalization import normalize_images

from .affinity import affinity_loss, boundary_random_walk, pair_affinities
from .head import IRNEdgeHead

__all__ = ["IRNEdgeHead", "IRNEdge"]


@META_ARCH_REGISTRY.register()
class IRNEdge(nn.Module):
    """Boundary branch of IRN: training loss from pseudo labels, random walk at inference."""

    # sem_seg holds max-normalised random-walk scores with a constant background (wss_d2.inference.scores)
    sem_seg_kind = "scores"

    @configurable
    def __init__(
        self,
        *,
        backbone,
        in_features,
        edge_channels,
        num_groups,
        num_classes,
        background_class,
        radius,
        rw_radius,
        beta,
        exp_times,
        cam_power,
        bg_threshold,
        pad_size,
        ignore_label=255,
        pixel_mean,
        pixel_std,
    ):
        super().__init__()
        shapes = backbone.output_shape()
        missing = [f for f in in_features if f not in shapes]
        if missing:
            raise ValueError(f"IRNEdge: the backbone does not output {missing} (MODEL.RESNETS.OUT_FEATURES)")
        self.backbone = backbone
        self.in_features = list(in_features)
        self.head = IRNEdgeHead(
            [shapes[f].channels for f in in_features], [shapes[f].stride for f in in_features], edge_channels, num_groups
        )
        self.stride = self.head.target_stride
        self.num_classes = num_classes
        self.background_class = background_class
        self.radius = radius
        self.rw_radius = rw_radius
        self.beta = beta
        self.exp_times = exp_times
        self.cam_power = cam_power
        self.bg_threshold = bg_threshold
        self.pad_size = pad_size
        self.ignore_label = ignore_label
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg):
        irn, test = cfg.MODEL.IRN, cfg.TEST.IRN
        return {
            "backbone": build_backbone(cfg),
            "in_features": irn.IN_FEATURES,
            "edge_channels": irn.EDGE_CHANNELS,
            "num_groups": irn.NUM_GROUPS,
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "background_class": irn.BACKGROUND_CLASS,
            "radius": irn.RADIUS,
            "rw_radius": test.RADIUS,
            "beta": test.BETA,
            "exp_times": test.EXP_TIMES,
            "cam_power": test.CAM_POWER,
            "bg_threshold": test.BG_THRESHOLD,
            "pad_size": test.PAD_SIZE,
            "ignore_label": cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    def train(self, mode=True):
        super().train(mode)
        self.backbone.eval()  # the backbone is a fixed feature extractor (frozen statistics)
        return self

    def edge_logits(self, images):
        with torch.no_grad():
            features = self.backbone(images)
        return self.head([features[f].detach() for f in self.in_features])

    def normalize(self, images, valid_mask=None):
        return normalize_images(images, self.pixel_mean, self.pixel_std, valid_mask)

    def forward(self, batched_inputs):
        if not self.training:
            return [self.inference(x) for x in batched_inputs]
        images = stack_crops(batched_inputs, "image")
        valid = stack_crops(batched_inputs, "valid_mask").float()
        logits = self.edge_logits(self.normalize(images, valid))
        labels = stack_crops(batched_inputs, "sem_seg").to(self.device)
        # labels to the stride-4 grid, nearest with PIL's sampling (pixel 4i + 2)
        labels = F.interpolate(labels[:, None].float(), size=logits.shape[-2:], mode="nearest-exact")[:, 0].long()
        affinities = pair_affinities(torch.sigmoid(logits), self.radius)
        loss, _ = affinity_loss(affinities, labels, self.radius, self.num_classes, self.background_class)
        return {"loss_affinity": loss}

    @torch.no_grad()
    def boundary(self, image):
        """(h4, w4) boundary probabilities of one (3, H, W) image, fused with its flip."""
        height, width = image.shape[-2:]
        pad_h = max(self.pad_size, height + (-height) % 16)
        pad_w = max(self.pad_size, width + (-width) % 16)
        batch = self.normalize(torch.stack([image, image.flip(-1)]))
        batch = F.pad(batch, (0, pad_w - width, 0, pad_h - height))  # zero after normalisation
        logits = self.edge_logits(batch)
        h4, w4 = (height - 1) // self.stride + 1, (width - 1) // self.stride + 1
        logits = logits[:, :h4, :w4]
        return torch.sigmoid(logits[0] / 2 + logits[1].flip(-1) / 2)

    @torch.no_grad()
    def inference(self, input):
        """Random-walk label scores of one image from its CAMs (input "cams", "cam_labels")."""
        if "cams" not in input:
            raise KeyError(
                f"IRNEdge inference propagates CAMs: {input.get('file_name', '?')} has none (register the "
                "split with DATASETS.CAMS so that each image has a cam_file_name)"
            )
        image = input["image"]
        height, width = image.shape[-2:]
        boundary = self.boundary(image)
        cams = input["cams"].to(self.device).float()
        labels = torch.as_tensor(input["cam_labels"], device=self.device)
        scores = F.interpolate(cams[None], size=boundary.shape, mode="bilinear", align_corners=False)[0]
        scores = scores.clamp_min(0).pow(self.cam_power)
        propagated = boundary_random_walk(scores, boundary, self.rw_radius, self.beta, self.exp_times)
        propagated = F.interpolate(
            propagated[None], scale_factor=self.stride, mode="bilinear", align_corners=False
        )[0, :, :height, :width]
        propagated = propagated / propagated.max().clamp_min(1e-8)
        # foreground-only CAMs get IRN's constant background score (TEST.IRN.BG_THRESHOLD)
        sem_seg = cams_to_class_scores(
            propagated, labels, self.num_classes, self.background_class, self.bg_threshold
        )
        return {"sem_seg": sem_seg, "sem_seg_kind": self.sem_seg_kind, "boundary": boundary}
