"""Weak-shot pseudo labels (SimFormer's second stage, docs/simformer.md §6)."""
import numpy as np

__all__ = ["weak_shot_pseudo_label"]


def weak_shot_pseudo_label(prediction, ground_truth, novel_classes, ignore_label=255):
    """
    The pseudo label of one training image of a weak-shot split: 255 everywhere, the predicted
    class where the prediction (H, W) is one of the image's novel tags (the novel classes of its
    whole-image label set), then every base pixel of the ground truth (H, W) on top. Novel
    predictions outside the tags and base predictions stay 255; novel GT pixels are read only as
    the image's tag set.
    """
    if prediction.shape != ground_truth.shape:
        raise ValueError(f"prediction {prediction.shape} and ground truth {ground_truth.shape} differ in size")
    novel = np.asarray(sorted(novel_classes), dtype=np.int64)
    is_novel_gt = np.isin(ground_truth, novel)
    tags = np.unique(ground_truth[is_novel_gt])
    out = np.full(prediction.shape, ignore_label, dtype=np.uint8)
    keep = np.isin(prediction, tags)
    out[keep] = prediction[keep]
    base = (ground_truth != ignore_label) & ~is_novel_gt
    out[base] = ground_truth[base]
    return out
