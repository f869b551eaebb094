"""Augmentations that detectron2 lacks."""
import numpy as np

from detectron2.data import transforms as T
from detectron2.data.transforms import ResizeTransform
from PIL import Image, ImageEnhance, ImageFilter


class RandomScale(T.Augmentation):
    """
    Resize by a factor drawn uniformly from [min_scale, max_scale] of the image's own size:
    the DeepLab recipe (detectron2's ResizeScale scales relative to a fixed target size).
    Label maps follow with nearest-neighbour interpolation.
    """

    def __init__(self, min_scale, max_scale):
        super().__init__()
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"RandomScale needs 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
        self._init(locals())

    def get_transform(self, image):
        h, w = image.shape[:2]
        scale = np.random.uniform(self.min_scale, self.max_scale)
        new_h, new_w = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
        return ResizeTransform(h, w, new_h, new_w, Image.BILINEAR)


class RandomLongSide(T.Augmentation):
    """
    Resize so that the long side is an integer drawn uniformly from [min_size, max_size]
    (inclusive), the other side round(side * scale), with PIL bicubic: SIPE's and IRN's
    recipe (docs/sipe.md §4.3). Label maps follow with nearest-neighbour interpolation.
    """

    def __init__(self, min_size, max_size):
        super().__init__()
        if not 0 < min_size <= max_size:
            raise ValueError(f"RandomLongSide needs 0 < min_size <= max_size, got {min_size}, {max_size}")
        self._init(locals())

    def get_transform(self, image):
        h, w = image.shape[:2]
        scale = np.random.randint(self.min_size, self.max_size + 1) / max(h, w)
        new_h, new_w = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
        return ResizeTransform(h, w, new_h, new_w, Image.BICUBIC)


class StrongPhotometricTransform(T.Transform):
    """The image-only colour changes drawn by StrongPhotometric; geometry and labels unchanged."""

    def __init__(self, jitter, grayscale, blur_radius, shift):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img):
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"StrongPhotometric expects an (H, W, 3) uint8 image, got {img.shape} {img.dtype}")
        pil = Image.fromarray(img)
        if self.jitter is not None:
            for name, factor in self.jitter:  # torchvision ColorJitter's random order
                pil = _ADJUSTMENTS[name](pil, factor)
        if self.grayscale:
            pil = pil.convert("L").convert("RGB")
        if self.blur_radius is not None:
            pil = pil.filter(ImageFilter.GaussianBlur(radius=self.blur_radius))
        out = np.asarray(pil)
        if self.shift is not None:
            out = np.clip(np.round(out.astype(np.float32) + self.shift), 0, 255).astype(np.uint8)
        return out

    def apply_coords(self, coords):
        return coords

    def apply_segmentation(self, segmentation):
        return segmentation


def _hue(pil, factor):
    from torchvision.transforms import functional as TF

    return TF.adjust_hue(pil, factor)


_ADJUSTMENTS = {
    "brightness": lambda pil, f: ImageEnhance.Brightness(pil).enhance(f),
    "contrast": lambda pil, f: ImageEnhance.Contrast(pil).enhance(f),
    "saturation": lambda pil, f: ImageEnhance.Color(pil).enhance(f),
    "hue": _hue,
}


class StrongPhotometric(T.Augmentation):
    """
    AGMM's (UniMatch's) strong colour augmentation, image only (docs/agmm.md §1.4 step 6), each
    part drawn independently: with p 0.5 a colour jitter (brightness, contrast, saturation
    factors in [1 − 0.5, 1 + 0.5], hue shift in [−0.25, 0.25], applied in random order);
    grayscale with p 0.1; with p 0.5 a Gaussian blur of radius U(0.1, 2.0); with p 0.5 one
    scalar U(−10, 10) added to every channel of every pixel (rounded, clipped to 0..255).
    """

    def __init__(self, jitter_prob=0.5, grayscale_prob=0.1, blur_prob=0.5, shift_prob=0.5):
        super().__init__()
        self._init(locals())

    def get_transform(self, image):
        jitter = None
        if np.random.rand() < self.jitter_prob:
            factors = {
                "brightness": np.random.uniform(0.5, 1.5),
                "contrast": np.random.uniform(0.5, 1.5),
                "saturation": np.random.uniform(0.5, 1.5),
                "hue": np.random.uniform(-0.25, 0.25),
            }
            jitter = [(name, factors[name]) for name in np.random.permutation(list(factors))]
        grayscale = bool(np.random.rand() < self.grayscale_prob)
        blur_radius = float(np.random.uniform(0.1, 2.0)) if np.random.rand() < self.blur_prob else None
        shift = float(np.random.uniform(-10, 10)) if np.random.rand() < self.shift_prob else None
        return StrongPhotometricTransform(jitter, grayscale, blur_radius, shift)
