"""Batching the mapper's per-image tensors for meta-architectures that train on fixed-size crops."""
import torch

__all__ = ["stack_crops"]


def stack_crops(batched_inputs, key):
    """
    torch.stack of `key` over the batch, or a ValueError naming the images and their sizes
    when the crops differ in size (a crop larger than an image stays smaller unless
    INPUT.CROP.PAD pads it to INPUT.CROP.SIZE).
    """
    tensors = [x[key] for x in batched_inputs]
    sizes = {tuple(t.shape[-2:]) for t in tensors}
    if len(sizes) > 1:
        listing = ", ".join(f"{x.get('file_name', '?')}: {tuple(t.shape[-2:])}" for x, t in zip(batched_inputs, tensors))
        raise ValueError(
            f"Training crops of one batch differ in size ({listing}); this model needs equal crops: "
            "set INPUT.CROP.ENABLED True with INPUT.CROP.PAD True (pads crops to INPUT.CROP.SIZE)"
        )
    return torch.stack(tensors)
