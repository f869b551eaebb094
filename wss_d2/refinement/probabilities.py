"""
Per-pixel class probabilities from a model output, and the two operations on them before a
label map is taken: restriction to the image's tags and argmax with a confidence threshold.
"""
import numpy as np

from ..inference.scores import output_sem_seg_kind, to_probabilities
from ..modeling.cam import cams_to_class_scores

__all__ = ["SOURCES", "scores_to_probabilities", "restrict_to_tags", "argmax_with_threshold"]

# what of a model output becomes the probabilities: its segmentation scores, or its CAMs
SOURCES = ("sem_seg", "cams")


def scores_to_probabilities(output, source, num_classes, background_score, background_class, kind=None):
    """
    (K, H, W) float32 probabilities from one model output.

    source "sem_seg": its `sem_seg` converted by the kind the output declares ("sem_seg_kind";
    else `kind`, the model's declared one; else logits). source "cams": its `cams` of classes
    `cam_labels` written into K class scores, with the constant `background_score` in the
    channel `background_class` when the maps have no background channel (foreground-only
    CAMs, max-normalised), then divided by their per-pixel sum.
    """
    if source not in SOURCES:
        raise ValueError(f"scores_to_probabilities: source must be one of {list(SOURCES)}, got {source!r}")
    if source == "sem_seg":
        kind = output_sem_seg_kind(output, default=kind)
        return to_probabilities(output["sem_seg"].detach().cpu(), kind).numpy()
    if "cams" not in output:
        raise KeyError("--source cams: the model's outputs have no 'cams' (and 'cam_labels')")
    scores = cams_to_class_scores(
        output["cams"].detach().float().cpu(), output["cam_labels"].cpu(), num_classes,
        background_class=background_class, background_score=None if background_class is None else background_score,
    )
    # a distribution per pixel, as the CRF's unary expects
    return to_probabilities(scores, "scores").numpy()


def restrict_to_tags(probs, image_labels):
    """
    (K, H, W) probabilities with the classes absent from the image's tags (`image_labels`,
    K multi-hot values, the background's among them) set to 0, renormalised per pixel.
    """
    present = np.asarray(image_labels).reshape(-1) > 0
    probs = probs * present[:, None, None]
    return probs / np.maximum(probs.sum(0, keepdims=True), 1e-8)


def argmax_with_threshold(probs, threshold, ignore):
    """uint8 argmax of (K, H, W) probabilities; pixels whose top probability is below `threshold` get `ignore`."""
    label = probs.argmax(0).astype(np.uint8)
    if threshold > 0:
        label[probs.max(0) < threshold] = ignore
    return label
