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


def _to_image_dtype(values, dtype):
    """Float results back to the image's dtype: uint8 rounded (half to even) and clipped."""
    if dtype == np.uint8:
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return values.astype(dtype, copy=False)


# luma weights of RandomGrayscale (docs/spml.md §4.2), in R, G, B order
GRAYSCALE_WEIGHTS_RGB = (0.3, 0.59, 0.11)


class GrayscaleTransform(T.Transform):
    """Y = w_R R + w_G G + w_B B copied to the 3 channels; geometry and labels unchanged."""

    def __init__(self, weights):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img):
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"Grayscale expects an (H, W, 3) image, got {img.shape}")
        luma = img.astype(np.float64) @ np.asarray(self.weights, dtype=np.float64)
        return _to_image_dtype(np.repeat(luma[:, :, None], 3, axis=2), img.dtype)

    def apply_coords(self, coords):
        return coords

    def apply_segmentation(self, segmentation):
        return segmentation


class RandomGrayscale(T.Augmentation):
    """
    With probability `prob`, replace the image by its luma Y = 0.3 R + 0.59 G + 0.11 B on all
    three channels (SPML's stage C, docs/spml.md §4.2; not PIL's 0.299/0.587/0.114 of
    StrongPhotometric). `image_format` ("RGB" or "BGR") orders the weights. One uniform draw
    from numpy's global generator per image (the loader seeds it per image, so resume is exact).
    A uint8 image is rounded back to uint8 (at most half a grey level from the float result).
    """

    def __init__(self, prob, image_format="RGB"):
        super().__init__()
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandomGrayscale needs a probability in [0, 1], got {prob}")
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"RandomGrayscale needs an RGB or BGR image (INPUT.FORMAT), got {image_format!r}")
        self._init(locals())

    def get_transform(self, image):
        if np.random.rand() < self.prob:
            weights = GRAYSCALE_WEIGHTS_RGB if self.image_format == "RGB" else GRAYSCALE_WEIGHTS_RGB[::-1]
            return GrayscaleTransform(weights)
        return T.NoOpTransform()


def blur_kernel(sigma, size=5):
    """The size×size kernel w(x, y) ∝ exp(−(x² + y²) / σ²), x, y in −(size//2)..size//2, summing to 1
    (docs/spml.md §4.2: σ², not 2σ², in the exponent)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"The blur kernel size must be odd and positive, got {size}")
    if sigma <= 0:
        raise ValueError(f"The blur sigma must be positive, got {sigma}")
    offsets = np.arange(size, dtype=np.float64) - size // 2
    kernel = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / sigma ** 2)
    return kernel / kernel.sum()


class BlurTransform(T.Transform):
    """`blur_kernel(sigma, size)` applied to each channel with cv2.filter2D (correlation; the
    kernel is symmetric, so also convolution) and its default border, reflect-101."""

    def __init__(self, sigma, size=5):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img):
        import cv2

        kernel = blur_kernel(self.sigma, self.size).astype(np.float32)
        blurred = cv2.filter2D(img.astype(np.float32), -1, kernel, borderType=cv2.BORDER_REFLECT_101)
        return _to_image_dtype(blurred.reshape(img.shape), img.dtype)

    def apply_coords(self, coords):
        return coords

    def apply_segmentation(self, segmentation):
        return segmentation


class RandomBlur(T.Augmentation):
    """
    With probability `prob`, blur the image with `blur_kernel(σ, size)`, σ ~ U(sigma_range)
    (SPML's stage C, docs/spml.md §4.2: p 0.5, σ ~ U(0.1, 5), 5×5). Draws from numpy's global
    generator: one uniform for the coin, one for σ when it fires. A uint8 image is rounded back.
    """

    def __init__(self, prob, sigma_range=(0.1, 5.0), size=5):
        super().__init__()
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandomBlur needs a probability in [0, 1], got {prob}")
        if len(sigma_range) != 2 or not 0 < sigma_range[0] <= sigma_range[1]:
            raise ValueError(f"RandomBlur needs a sigma range [min, max] with 0 < min <= max, got {list(sigma_range)}")
        blur_kernel(sigma_range[0], size)  # checks the size
        sigma_range = tuple(float(s) for s in sigma_range)
        self._init(locals())

    def get_transform(self, image):
        if np.random.rand() < self.prob:
            return BlurTransform(float(np.random.uniform(*self.sigma_range)), self.size)
        return T.NoOpTransform()


# image-only colour transforms: label maps, coordinates and CAMs skip them
class ColorAugSSDTransform(T.Transform):
    """
    The SSD photometric distortion drawn by ColorAugSSD (image only): brightness (add a value), then
    contrast (scale) before or after saturation (scale the HSV saturation) and hue (shift the HSV
    hue, OpenCV's 0..179 scale, modulo 180); each change None when not drawn. Works on BGR, as SSD.
    """

    def __init__(self, img_format, brightness, contrast, saturation, hue, contrast_first):
        super().__init__()
        self._set_attributes(locals())

    @staticmethod
    def _affine(img, alpha=1.0, beta=0.0):
        return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    def apply_image(self, img):
        import cv2

        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"ColorAugSSD expects an (H, W, 3) uint8 image, got {img.shape} {img.dtype}")
        if self.img_format == "RGB":
            img = img[:, :, ::-1]
        img = np.ascontiguousarray(img)
        if self.brightness is not None:
            img = self._affine(img, beta=self.brightness)
        if self.contrast_first and self.contrast is not None:
            img = self._affine(img, alpha=self.contrast)
        if self.saturation is not None or self.hue is not None:
            hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
            if self.saturation is not None:
                hsv[:, :, 1] = self._affine(hsv[:, :, 1], alpha=self.saturation)
            if self.hue is not None:
                hsv[:, :, 0] = ((hsv[:, :, 0].astype(np.int64) + self.hue) % 180).astype(np.uint8)
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        if not self.contrast_first and self.contrast is not None:
            img = self._affine(img, alpha=self.contrast)
        if self.img_format == "RGB":
            img = img[:, :, ::-1]
        return np.ascontiguousarray(img)

    def apply_coords(self, coords):
        return coords

    def apply_segmentation(self, segmentation):
        return segmentation


class ColorAugSSD(T.Augmentation):
    """
    SSD's photometric distortion as MaskFormer trains with it (INPUT.COLOR_AUG_SSD, docs/simformer.md §6):
    brightness ±32, contrast [0.5, 1.5], saturation [0.5, 1.5], hue ±18, each with probability 0.5;
    brightness first, contrast right after it or last (probability 0.5 each).
    """

    def __init__(self, img_format, brightness_delta=32, contrast=(0.5, 1.5), saturation=(0.5, 1.5), hue_delta=18):
        super().__init__()
        self._init(locals())

    def get_transform(self, image):
        rand = np.random.uniform
        brightness = rand(-self.brightness_delta, self.brightness_delta) if np.random.randint(2) else None
        contrast_first = bool(np.random.randint(2))
        contrast = rand(*self.contrast) if np.random.randint(2) else None
        saturation = rand(*self.saturation) if np.random.randint(2) else None
        hue = int(np.random.randint(-self.hue_delta, self.hue_delta + 1)) if np.random.randint(2) else None
        return ColorAugSSDTransform(self.img_format, brightness, contrast, saturation, hue, contrast_first)


PHOTOMETRIC_TRANSFORMS = (StrongPhotometricTransform, GrayscaleTransform, BlurTransform, ColorAugSSDTransform)
