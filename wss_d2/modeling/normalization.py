"""Input normalisation shared by the meta-architectures that take raw uint8 images."""
import torch

__all__ = ["normalize_images"]


def normalize_images(images, pixel_mean, pixel_std, valid_mask=None):
    """
    (N, 3, H, W) uint8 images → float (x − mean) / std on the device of `pixel_mean`; pixels
    where `valid_mask` (N, H, W) is False (crop padding) become exactly 0, the mean pixel.
    """
    images = (images.to(pixel_mean.device).float() - pixel_mean) / pixel_std
    if valid_mask is not None:
        images = images * valid_mask.to(images.device, torch.float32)[:, None]
    return images
