"""
MCC's photometric views of a training crop (docs/mcc.md §2 steps 5-7), with torchvision's and
PIL's semantics and random generators: flips, colour jitter and grayscale draw from torch, blur
and solarize from Python's `random` (as DINO's helpers); the training loader seeds both.
"""
import random

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps
from torchvision import transforms as TT
from torchvision.transforms import functional as TF

__all__ = ["MultiViewAugmentation"]

_PROB_KEYS = (
    "FLIP_PROB", "COLOR_JITTER_PROB", "GRAYSCALE_PROB", "MAIN_BLUR_PROB",
    "LOCAL_BLUR_PROB", "GLOBAL_BLUR_PROB", "GLOBAL_SOLARIZE_PROB",
)


class MultiViewAugmentation:
    """The main view (global view 1), the local view and global view 2 of one sample."""

    def __init__(self, crop_size, *, flip_prob=0.5, color_jitter=(0.4, 0.4, 0.2, 0.1), color_jitter_prob=0.8,
                 grayscale_prob=0.2, blur_radius=(0.1, 2.0), main_blur_prob=1.0, local_blur_prob=0.5,
                 global_blur_prob=0.1, global_solarize_prob=0.2, solarize_threshold=128,
                 global_crop_scale=(0.4, 1.0), global_crop_ratio=(0.75, 4 / 3), flip_box=False,
                 share_local_flip=False):
        self.crop_size = tuple(int(s) for s in crop_size)
        self.flip_prob = flip_prob
        self.jitter = TT.ColorJitter(*color_jitter)  # its forward draws the random order and factors
        self.color_jitter_prob = color_jitter_prob
        self.grayscale = TT.RandomGrayscale(grayscale_prob)
        self.blur_radius = tuple(blur_radius)
        self.main_blur_prob, self.local_blur_prob = main_blur_prob, local_blur_prob
        self.global_blur_prob, self.global_solarize_prob = global_blur_prob, global_solarize_prob
        self.solarize_threshold = solarize_threshold
        self.global_crop = TT.RandomResizedCrop(
            self.crop_size, tuple(global_crop_scale), tuple(global_crop_ratio), TT.InterpolationMode.BICUBIC
        )
        self.flip_box, self.share_local_flip = flip_box, share_local_flip

    @classmethod
    def from_config(cls, cfg, crop_size):
        mv = cfg.INPUT.MULTI_VIEW
        for key in _PROB_KEYS:
            if not 0.0 <= mv[key] <= 1.0:
                raise ValueError(f"INPUT.MULTI_VIEW.{key} must be a probability in [0, 1], got {mv[key]}")
        if cfg.INPUT.FORMAT != "RGB":
            raise ValueError(f"INPUT.MULTI_VIEW.ENABLED needs INPUT.FORMAT 'RGB' (torchvision colour ops), got {cfg.INPUT.FORMAT!r}")
        if crop_size is None:
            raise ValueError("INPUT.MULTI_VIEW.ENABLED needs fixed-size crops: INPUT.CROP.ENABLED and INPUT.CROP.PAD True")
        return cls(
            crop_size, flip_prob=mv.FLIP_PROB, color_jitter=tuple(mv.COLOR_JITTER),
            color_jitter_prob=mv.COLOR_JITTER_PROB, grayscale_prob=mv.GRAYSCALE_PROB,
            blur_radius=tuple(mv.BLUR_RADIUS), main_blur_prob=mv.MAIN_BLUR_PROB,
            local_blur_prob=mv.LOCAL_BLUR_PROB, global_blur_prob=mv.GLOBAL_BLUR_PROB,
            global_solarize_prob=mv.GLOBAL_SOLARIZE_PROB, solarize_threshold=mv.SOLARIZE_THRESHOLD,
            global_crop_scale=tuple(mv.GLOBAL_CROP_SCALE), global_crop_ratio=tuple(mv.GLOBAL_CROP_RATIO),
            flip_box=mv.FLIP_BOX, share_local_flip=mv.SHARE_LOCAL_FLIP,
        )

    def _flip_coin(self):
        return bool(torch.rand(1) < self.flip_prob)  # RandomHorizontalFlip's draw

    def _view(self, pil, flipped, blur_prob, solarize_prob=0.0):
        """flip -> RandomApply(ColorJitter) -> RandomGrayscale -> blur -> solarize (docs/mcc.md §2)."""
        if flipped:
            pil = TF.hflip(pil)
        if not self.color_jitter_prob < torch.rand(1):  # RandomApply's test
            pil = self.jitter(pil)
        pil = self.grayscale(pil)
        if random.random() < blur_prob:
            pil = pil.filter(ImageFilter.GaussianBlur(radius=random.uniform(*self.blur_radius)))
        if solarize_prob > 0 and random.random() < solarize_prob:
            pil = ImageOps.solarize(pil, self.solarize_threshold)
        return torch.as_tensor(np.array(pil)).permute(2, 0, 1).contiguous()

    def __call__(self, crop, original, valid_mask):
        """
        crop: (H, W, 3) uint8 padded crop; original: the un-rescaled (h, w, 3) uint8 image;
        valid_mask: (H, W) bool, False on padding. Returns the fields of the mapper's output.
        """
        rows, cols = np.nonzero(valid_mask.any(1))[0], np.nonzero(valid_mask.any(0))[0]
        # the non-padded region, before the main view's flip (Q1 of docs/mcc.md §15)
        h0, h1, w0, w1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        pil = Image.fromarray(np.ascontiguousarray(crop))
        main_flipped = self._flip_coin()
        image = self._view(pil, main_flipped, self.main_blur_prob)
        local_flipped = main_flipped if self.share_local_flip else self._flip_coin()
        local = self._view(pil, local_flipped, self.local_blur_prob)
        second = self.global_crop(Image.fromarray(np.ascontiguousarray(original)))
        global2 = self._view(second, self._flip_coin(), self.global_blur_prob, self.global_solarize_prob)
        if self.flip_box and main_flipped:  # the fix of Q1: the box follows the flip
            width = valid_mask.shape[1]
            w0, w1 = width - w1, width - w0
        return {
            "image": image,
            "local_view": local,
            "global_view2": global2,
            "img_box": torch.tensor([h0, h1, w0, w1], dtype=torch.int64),
            "main_flipped": main_flipped,
            "local_flipped": local_flipped,
        }
