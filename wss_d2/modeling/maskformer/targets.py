"""Mask-classification targets built from the mapper's label maps inside the model (docs/maskformer.md §2)."""
import torch
from torch.nn import functional as F

__all__ = ["pad_label_map", "semantic_targets"]


def pad_label_map(label, size, ignore_value):
    """(H, W) int64 label map padded at the bottom/right to `size` with `ignore_value`."""
    ph, pw = size[0] - label.shape[0], size[1] - label.shape[1]
    if ph < 0 or pw < 0:
        raise ValueError(f"label map {tuple(label.shape)} is larger than the padded image {tuple(size)}")
    return F.pad(label, (0, pw, 0, ph), value=ignore_value)


def semantic_targets(label, num_classes, ignore_value, file_name="?"):
    """
    One mask target per class present in `label` (H, W) (already padded), in ascending class order:
    {"labels" (T,), "masks" (T, H, W) bool, "has_mask" (T,) all True}. A value that is neither a class
    id nor `ignore_value` is an error naming the file.
    """
    classes = torch.unique(label)
    classes = classes[classes != ignore_value]
    bad = classes[(classes < 0) | (classes >= num_classes)]
    if len(bad):
        raise ValueError(f"{file_name}: label values {bad.tolist()} are neither class ids 0..{num_classes - 1} "
                         f"nor the ignore value {ignore_value}")
    masks = label[None] == classes[:, None, None]
    return {"labels": classes, "masks": masks, "has_mask": torch.ones(len(classes), dtype=torch.bool, device=label.device)}
