"""
The MCC meta-architecture (docs/mcc.md §1-§7, §10, §14.3): a ViT trained from image tags with two
CAM classifiers, the patch-token affinity loss, masked collaborative contrast through an EMA
projection teacher, and an online LargeFOV head trained on PAR pseudo labels with an energy loss.

Training: batched crops from WeakLabelDatasetMapper with INPUT.MULTI_VIEW.ENABLED ("image" = global
view 1, "global_view2", "local_view", "img_box", "image_labels"); the iteration comes from
detectron2's EventStorage (the 0-based step, as the original's n_iter). Returns the weighted losses
loss_cls, loss_cls_aux, loss_aff, loss_mcc, loss_seg, loss_reg.
Inference: one image per input at whatever size it comes (TEST.TTA.BASE_SIZE resizes it first); with
MODEL.MCC.TEST_OUTPUT "seg", `sem_seg` is the LargeFOV logits at (height, width) ("logits"); with
"cam" / "cam_aux", the multi-scale CAMs of the image's tagged classes ("cams", "cam_labels") and
`sem_seg` the CAM scores with a constant background ("scores").
"""
import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.utils.events import get_event_storage

from ...modeling.batching import stack_crops
from ...modeling.cam import cams_to_class_scores, foreground_tags, fuse_flip, min_max_normalize, multi_scale_cams
from ...modeling.energy_loss import DenseEnergyLoss
from ...modeling.heads.largefov import LargeFOV
from ...modeling.normalization import normalize_images
from ...refinement.par import PAR, box_mask, par_image, refine_cams_with_background
from .config import CAM_SOURCES, TEST_OUTPUTS
from .heads import ProjectionHead, ema_update
from .losses import (
    IGNORE_INDEX,
    affinity_labels,
    affinity_loss,
    classification_loss,
    mcc_contrast_loss,
    ptc_token_labels,
    segmentation_loss,
)
from .masks import mcc_masks

__all__ = ["MCC"]

CAM_EPS = 1e-5  # the min-max normalisation's eps (docs/mcc.md §3)
NUM_GLOBAL_VIEWS = 2


def _bilinear(x, size):
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


@META_ARCH_REGISTRY.register()
class MCC(nn.Module):
    """Masked Collaborative Contrast (Wu et al., WACV 2024) on ToCo's single-stage network."""

    @configurable
    def __init__(
        self,
        *,
        backbone,
        num_classes,
        pixel_mean,
        pixel_std,
        background_class=0,
        loss_weights,
        seg_start_iter=2000,
        temperature=0.5,
        flag_cams=("aux", "final"),
        flag_cam_switch_iter=12000,
        pseudo_label_cams=("final", "final"),
        pseudo_label_cam_switch_iter=12000,
        cam_scales=(1.0, 0.5, 1.5),
        high_thresh=0.7,
        low_thresh=0.25,
        cam_background_score=0.5,
        num_local=8,
        mask_block=4,
        mask_ratio=0.95,
        pos_frac=0.2,
        projector_dims=(2048, 256, 1024),
        ema_momentum=0.9,
        decoder_channels=512,
        decoder_dilation=5,
        ptc_pixel_box=True,
        keep_zero_weighted_losses=True,
        drop_masked_tokens=True,
        test_output="seg",
        par,
        par_downscale=2,
        energy_loss,
    ):
        """
        Args (the MODEL.MCC keys of add_mcc_config, lower case; see docs/mcc.md):
            backbone: a MaskableViT-like backbone: forward(images, policy) -> {"final", "aux", "cls"}.
            num_classes: classes with background (MODEL.SEM_SEG_HEAD.NUM_CLASSES).
            loss_weights: {"cls", "cls_aux", "aff", "mcc", "seg", "reg"} -> weight.
            par: the PAR module; energy_loss: the DenseEnergyLoss module.
        """
        super().__init__()
        for name, value in (("FLAG_CAMS", flag_cams), ("PSEUDO_LABEL_CAMS", pseudo_label_cams)):
            if len(value) != 2 or any(v not in CAM_SOURCES for v in value):
                raise ValueError(f"MODEL.MCC.{name} must be two of {CAM_SOURCES} (before, after the switch), got {list(value)}")
        if test_output not in TEST_OUTPUTS:
            raise ValueError(f"MODEL.MCC.TEST_OUTPUT must be one of {TEST_OUTPUTS}, got {test_output!r}")
        if not 0 <= background_class < num_classes:
            raise ValueError(f"MODEL.MCC.BACKGROUND_CLASS={background_class} is outside 0..{num_classes - 1}")
        unknown = set(loss_weights) - {"cls", "cls_aux", "aff", "mcc", "seg", "reg"}
        if unknown:
            raise ValueError(f"MCC: unknown loss weights {sorted(unknown)}")
        self.backbone = backbone
        self.num_classes = num_classes
        self.background_class = background_class
        dim = backbone.output_shape()["final"].channels
        self.patch_size = backbone.output_shape()["final"].stride
        self.classifier = nn.Conv2d(dim, num_classes - 1, 1, bias=False)
        self.aux_classifier = nn.Conv2d(dim, num_classes - 1, 1, bias=False)
        self.decoder = LargeFOV(dim, num_classes, decoder_channels, decoder_dilation)
        hidden, bottleneck, out = projector_dims
        self.projector = ProjectionHead(dim, out, hidden, bottleneck)
        self.projector_teacher = copy.deepcopy(self.projector)
        self.projector_teacher.requires_grad_(False)
        self.par = par
        self.energy_loss = energy_loss

        self.loss_weights = dict(loss_weights)
        self.seg_start_iter = seg_start_iter
        self.temperature = temperature
        self.flag_cams, self.flag_cam_switch_iter = tuple(flag_cams), flag_cam_switch_iter
        self.pseudo_label_cams, self.pseudo_label_cam_switch_iter = tuple(pseudo_label_cams), pseudo_label_cam_switch_iter
        self.cam_scales = tuple(cam_scales)
        self.high_thresh, self.low_thresh = high_thresh, low_thresh
        self.cam_background_score = cam_background_score
        self.num_local, self.mask_block, self.mask_ratio, self.pos_frac = num_local, mask_block, mask_ratio, pos_frac
        self.ema_momentum = ema_momentum
        self.ptc_pixel_box = ptc_pixel_box
        self.keep_zero_weighted_losses = keep_zero_weighted_losses
        self.drop_masked_tokens = drop_masked_tokens
        self.test_output = test_output
        self.par_downscale = par_downscale
        self._ema_iter = None  # the step whose EMA update is done (once per optimizer step)
        # parameters outside the loss for this configuration (the projector without the contrast, the
        # decoder without the segmentation terms or before their start): DDP must look for them
        self.find_unused_parameters = (
            self.loss_weights["mcc"] == 0
            or (self.loss_weights["seg"] == 0 and self.loss_weights["reg"] == 0)
            or not keep_zero_weighted_losses
        )
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg):
        mcc = cfg.MODEL.MCC
        return {
            "backbone": build_backbone(cfg, ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN))),
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "background_class": mcc.BACKGROUND_CLASS,
            "loss_weights": {
                "cls": mcc.CLS_LOSS_WEIGHT,
                "cls_aux": mcc.CLS_AUX_LOSS_WEIGHT,
                "aff": mcc.AFF_LOSS_WEIGHT,
                "mcc": mcc.MCC_LOSS_WEIGHT,
                "seg": mcc.SEG_LOSS_WEIGHT,
                "reg": mcc.REG_LOSS_WEIGHT,
            },
            "seg_start_iter": mcc.SEG_START_ITER,
            "temperature": mcc.TEMPERATURE,
            "flag_cams": tuple(mcc.FLAG_CAMS),
            "flag_cam_switch_iter": mcc.FLAG_CAM_SWITCH_ITER,
            "pseudo_label_cams": tuple(mcc.PSEUDO_LABEL_CAMS),
            "pseudo_label_cam_switch_iter": mcc.PSEUDO_LABEL_CAM_SWITCH_ITER,
            "cam_scales": tuple(mcc.CAM.SCALES),
            "high_thresh": mcc.CAM.HIGH_THRESH,
            "low_thresh": mcc.CAM.LOW_THRESH,
            "cam_background_score": mcc.CAM.BACKGROUND_SCORE,
            "num_local": mcc.MASK.NUM_LOCAL,
            "mask_block": mcc.MASK.BLOCK,
            "mask_ratio": mcc.MASK.RATIO,
            "pos_frac": mcc.MASK.POS_FRAC,
            "projector_dims": (mcc.PROJECTOR.HIDDEN_DIM, mcc.PROJECTOR.BOTTLENECK_DIM, mcc.PROJECTOR.OUT_DIM),
            "ema_momentum": mcc.PROJECTOR.EMA_MOMENTUM,
            "decoder_channels": mcc.DECODER.CHANNELS,
            "decoder_dilation": mcc.DECODER.DILATION,
            "ptc_pixel_box": mcc.QUIRKS.PTC_PIXEL_BOX,
            "keep_zero_weighted_losses": mcc.QUIRKS.KEEP_ZERO_WEIGHTED_LOSSES,
            "drop_masked_tokens": mcc.DROP_MASKED_TOKENS,
            "test_output": mcc.TEST_OUTPUT,
            "par": PAR(cfg, "MODEL.MCC.PAR"),
            "par_downscale": mcc.PAR.DOWNSCALE,
            "energy_loss": DenseEnergyLoss(cfg, "MODEL.MCC.REG"),
        }

    @property
    def device(self):
        return self.pixel_mean.device

    # ----------------------------------------------------------------------- the network
    def normalize(self, images):
        # the crop's black padding is normalised like any pixel (-mean/std), as the original
        return normalize_images(images, self.pixel_mean, self.pixel_std)

    def classify(self, features):
        """Global-max-pooled logits (B, K) of the final and the aux classifier."""
        logits = self.classifier(F.adaptive_max_pool2d(features["final"], 1)).flatten(1)
        aux_logits = self.aux_classifier(F.adaptive_max_pool2d(features["aux"], 1)).flatten(1)
        return logits, aux_logits

    def raw_cams(self, features):
        """(final, aux) CAMs at token resolution: the classifiers' weights on every token, no bias."""
        return self.classifier(features["final"]), self.aux_classifier(features["aux"])

    @torch.no_grad()
    def training_cams(self, images):
        """
        Multi-scale CAMs of normalised crops (docs/mcc.md §3): per scale, the image and its mirror in one
        batch, CAMs upsampled to the crop, flips fused by max, ReLU; scales summed; min-max per channel.
        Returns (final, aux), each (B, K, H, W) in [0, 1].
        """
        height, width = images.shape[-2:]

        def maps_at_scale(resized):
            cams, cams_aux = self.raw_cams(self.backbone(torch.cat([resized, resized.flip(-1)])))
            both = torch.cat([cams, cams_aux], dim=1)
            return F.relu(fuse_flip(_bilinear(both, (height, width)), "max"))

        both = multi_scale_cams(
            images, self.cam_scales, maps_at_scale, resize=_bilinear, size_rounding=math.floor,
            normalize=min_max_normalize, eps=CAM_EPS,
        )
        k = self.num_classes - 1
        return both[:, :k], both[:, k:]

    # ----------------------------------------------------------------------- training
    def forward(self, batched_inputs):
        if not self.training:
            return [self.inference(x) for x in batched_inputs]
        try:
            iteration = get_event_storage().iter
        except AssertionError:
            raise RuntimeError(
                "MCC's training forward reads the iteration from detectron2's EventStorage: call it inside "
                "`with EventStorage(start_iter):` (the Trainer does)"
            ) from None
        return self.losses(batched_inputs, iteration)

    def _stage(self, choices, switch_iter, iteration):
        return choices[0] if iteration <= switch_iter else choices[1]

    def losses(self, batched_inputs, iteration):
        """The weighted losses of one training step at 0-based `iteration` (docs/mcc.md §7)."""
        tags = foreground_tags(batched_inputs, self.num_classes, self.background_class, "MCC", self.device)
        images = self.normalize(stack_crops(batched_inputs, "image"))
        w = self.loss_weights
        seg_active = iteration > self.seg_start_iter
        # a term whose configured weight is 0 is left out (MCC_LOSS_WEIGHT 0: ToCo-style; all but the
        # classification terms 0: the plain CAM); Q4 keeps configured terms before their start
        seg_on = (w["seg"] != 0 or w["reg"] != 0) and (seg_active or self.keep_zero_weighted_losses)
        needs_cams = w["mcc"] != 0 or w["aff"] != 0 or seg_on

        features = self.backbone(images)
        logits, aux_logits = self.classify(features)
        grid = tuple(features["final"].shape[-2:])
        losses = {
            "loss_cls": w["cls"] * classification_loss(logits, tags),
            "loss_cls_aux": w["cls_aux"] * classification_loss(aux_logits, tags),
        }
        if not needs_cams:
            return losses
        boxes = image_boxes(batched_inputs).to(self.device)
        cams, cams_aux = self.training_cams(images)
        cam_of = {"final": cams, "aux": cams_aux}

        if w["mcc"] != 0:
            flag_cam = cam_of[self._stage(self.flag_cams, self.flag_cam_switch_iter, iteration)]
            losses["loss_mcc"] = w["mcc"] * self.contrast_loss(batched_inputs, features["cls"], flag_cam, tags, grid, iteration)

        if seg_on:
            seg_weight, reg_weight = (w["seg"], w["reg"]) if seg_active else (0.0, 0.0)
            pseudo_cam = cam_of[self._stage(self.pseudo_label_cams, self.pseudo_label_cam_switch_iter, iteration)]
            pseudo_labels = refine_cams_with_background(
                self.par, par_image(images, self.pixel_mean.flatten(), self.pixel_std.flatten()), pseudo_cam, tags,
                boxes, high_thre=self.high_thresh, low_thre=self.low_thresh, down_scale=self.par_downscale,
                ignore_index=IGNORE_INDEX,
            )
            seg_logits = _bilinear(self.decoder(features["final"]), images.shape[-2:])
            losses["loss_seg"] = seg_weight * segmentation_loss(seg_logits, pseudo_labels)
            losses["loss_reg"] = reg_weight * self.energy_loss(
                images * self.pixel_std + self.pixel_mean, seg_logits.softmax(dim=1),
                box_mask(boxes, images.shape[-2:]).float(), pseudo_labels,
            )

        if w["aff"] != 0:
            token_labels = ptc_token_labels(
                cams_aux, tags, boxes, grid, low_thre=self.low_thresh, high_thre=self.high_thresh,
                pixel_box_quirk=self.ptc_pixel_box, patch_size=self.patch_size,
            )
            losses["loss_aff"] = w["aff"] * affinity_loss(features["final"], affinity_labels(token_labels))
        return losses

    def contrast_loss(self, batched_inputs, cls_main, flag_cam, tags, grid, iteration):
        """
        The MCC term (docs/mcc.md §4.2, §4.3). The student's global view 1 is the main forward's CLS
        token (the same tensor through the same deterministic network as the original's separate
        pass). With MODEL.MCC.DROP_MASKED_TOKENS the masked views run on their visible tokens only
        (`masked_view_cls`); otherwise global view 2 and the masked views run as one batch of full
        sequences, global view 2 with an all-zero policy (identical to no mask).
        """
        for key in ("global_view2", "local_view"):
            if key not in batched_inputs[0]:
                raise KeyError(
                    f"MCC's contrast needs the mapper's multi-view inputs ('{key}'): set INPUT.MULTI_VIEW.ENABLED "
                    "True (or MODEL.MCC.MCC_LOSS_WEIGHT 0)"
                )
        b = cls_main.shape[0]
        masks = mcc_masks(
            flag_cam, tags, grid, num_local=self.num_local, block=self.mask_block, mask_rate=self.mask_ratio,
            pos_frac=self.pos_frac, low_thre=self.low_thresh, high_thre=self.high_thresh,
        )
        global2 = self.normalize(stack_crops(batched_inputs, "global_view2"))
        local = self.normalize(stack_crops(batched_inputs, "local_view"))
        if self.drop_masked_tokens:
            cls_global2 = self.backbone(global2)["cls"]
            cls_local = self.masked_view_cls(local, masks.masks)
        else:  # the original's computation: every token of every view, masked keys in the attention
            views = torch.cat([global2, local.repeat(self.num_local, 1, 1, 1)])
            policy = torch.cat([torch.zeros_like(masks.policy[:b]), masks.policy])
            cls_views = self.backbone(views, policy=policy)["cls"]
            cls_global2, cls_local = cls_views[:b], cls_views[b:]
        cls_global = torch.cat([cls_main, cls_global2])  # view-major: view 1 rows, then view 2 rows

        if self._ema_iter != iteration:  # once per optimizer step, before the teacher's projection
            ema_update(self.projector_teacher, self.projector, self.ema_momentum)
            self._ema_iter = iteration
        with torch.no_grad():
            teacher = self.projector_teacher(cls_global.detach())
        student = self.projector(torch.cat([cls_global, cls_local]))
        return mcc_contrast_loss(student, teacher, masks.flags, temperature=self.temperature)

    def masked_view_cls(self, local, masks):
        """
        CLS tokens (M·B, C), view-major, of the local views under their key masks (B, M, h, w), computed
        on [CLS + visible tokens] only. A key masked in every block is never attended to, so no visible
        token or the CLS ever depends on a masked token (tests/test_vit_backbone.py checks the
        equivalence): the result equals the full masked forward up to float rounding, at about 5 % of
        its attention and MLP cost (95 % of the tokens are masked). Views of one batch are padded to
        the largest visible count with masked keys.
        """
        b, m = masks.shape[:2]
        tokens, _ = self.backbone.embed(local)  # B, 1 + N, C
        visible = ~masks.transpose(0, 1).reshape(m * b, -1)  # view-major rows: view·B + image
        count = int(visible.sum(dim=1).max()) if visible.numel() else 0
        # the visible indices first (stable), then padding that stays masked
        order = torch.sort((~visible).to(torch.int8), dim=1, stable=True).indices[:, :count]
        keep = torch.gather(visible, 1, order)
        patches = tokens[:, 1:].repeat(m, 1, 1)  # row view·B + image holds image's tokens
        gathered = torch.gather(patches, 1, order[:, :, None].expand(-1, -1, patches.shape[-1]))
        sequence = torch.cat([tokens[:, :1].repeat(m, 1, 1), gathered], dim=1)
        policy = torch.cat([torch.zeros_like(keep[:, :1]), ~keep], dim=1).float()
        final, _ = self.backbone.forward_tokens(sequence, policy)
        return final[:, 0]

    # ----------------------------------------------------------------------- inference
    @torch.no_grad()
    def inference(self, input):
        """One image (3, H, W) at its own size; outputs at (height, width) (default the image's)."""
        image = input["image"].to(self.device)
        height, width = image.shape[-2:]
        output_size = (int(input.get("height", height)), int(input.get("width", width)))
        images = self.normalize(image[None])
        if self.test_output == "seg":
            seg = self.decoder(self.backbone(images)["final"])
            return {"sem_seg": _bilinear(seg, output_size)[0], "sem_seg_kind": "logits"}
        tags = foreground_tags([input], self.num_classes, self.background_class, "MCC (TEST_OUTPUT cam)", self.device)[0]
        cams, cams_aux = self.training_cams(images)
        maps = (cams if self.test_output == "cam" else cams_aux)[0]
        present = (tags > 0).nonzero()[:, 0]
        keys = present + (present >= self.background_class).long()  # foreground channel -> class id
        maps = _bilinear(maps[present][None], output_size)[0]
        sem_seg = cams_to_class_scores(maps, keys, self.num_classes, self.background_class, self.cam_background_score)
        return {"cams": maps, "cam_labels": keys, "sem_seg": sem_seg, "sem_seg_kind": "scores"}



def image_boxes(batched_inputs):
    """
    (B, 4) int64 [h0, h1, w0, w1) of the real image in each crop: the mapper's "img_box" (multi-view
    inputs, with the original's flip quirk), else the bounding box of "valid_mask" (no padding: the crop).
    """
    boxes = []
    for x in batched_inputs:
        if "img_box" in x:
            boxes.append(torch.as_tensor(x["img_box"], dtype=torch.int64))
            continue
        valid = x.get("valid_mask")
        if valid is None:
            h, w = x["image"].shape[-2:]
            boxes.append(torch.tensor([0, h, 0, w]))
            continue
        rows, cols = valid.any(dim=1).nonzero()[:, 0], valid.any(dim=0).nonzero()[:, 0]
        boxes.append(torch.stack([rows.min(), rows.max() + 1, cols.min(), cols.max() + 1]))
    return torch.stack(boxes)
