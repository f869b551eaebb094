"""Augmentations that detectron2 lacks."""
import numpy as np

from detectron2.data import transforms as T
from detectron2.data.transforms import ResizeTransform
from PIL import Image


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
    recipe (sipe.md §4.3). Label maps follow with nearest-neighbour interpolation.
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
