"""
SPML's stage-A labels for image tags and boxes, derived from class activation maps
(docs/spml.md §3.1, §3.2). Both return (H, W) uint8 maps in wss_d2's sparse encoding:
0..K-1 labelled, K unlabelled (there is no void: every pixel is image content).

Tags (`tag_cam_labels`, SPML's `seam_a6_th0.2`): each foreground CAM is divided by its own
maximum (SEAM's files are stored so; a no-op on max-normalised CAMs) and clipped to [0, 1];
the background score is b = (1 - max_c CAM_c)^alpha (alpha = 6); the scores {b, CAM_c for
the image's classes} are renormalised to sum to 1 per pixel (the documented choice: with raw
scores max(m, (1 - m)^6) >= 0.22 everywhere and no pixel would ever be unlabelled); the
label is the argmax, or unlabelled where the winning share is below `threshold` (0.2).

Boxes (`box_cam_labels`, SPML's `seambox_a6_th0.5`): pixels outside every box are background;
inside a box of class c, CAM_c is min-max normalised over that box's pixels; a covered pixel
takes the class of the covering box with the largest normalised value (overlaps: argmax of
the normalised CAMs), or is unlabelled when that value is below `threshold` (0.5). A box
whose CAM is constant has no evidence: its pixels are unlabelled unless another box claims
them. No background score competes inside the boxes (SPML's release leaves this open).

CAMs come as (label values, (C, H, W) maps), e.g. from
`wss_d2.data.weak_labels.read_irn_cams` on IRN or SIPE CAM files
(`tools/export_pseudo_labels.py --save-cams`); a background map among them is ignored.
`datasets/make_cam_labels.py` writes these labels for a registered split (docs/datasets.md §3.7).
"""
import numpy as np

__all__ = ["TAG_CAM_LABEL_DEFAULTS", "BOX_CAM_LABEL_DEFAULTS", "tag_cam_labels", "box_cam_labels", "box_pixel_ranges"]

# the official stage-A label files' parameters (docs/spml.md §3.1, §3.2)
TAG_CAM_LABEL_DEFAULTS = {"alpha": 6.0, "threshold": 0.2}
BOX_CAM_LABEL_DEFAULTS = {"threshold": 0.5}


def _foreground(cam_labels, cams, background_class):
    cam_labels = np.asarray(cam_labels, dtype=np.int64).reshape(-1)
    cams = np.asarray(cams, dtype=np.float64)
    if cams.ndim != 3 or cams.shape[0] != len(cam_labels):
        raise ValueError(f"CAMs must be (len(cam_labels), H, W); got {cams.shape} for {len(cam_labels)} labels")
    keep = cam_labels != background_class if background_class is not None else np.ones(len(cam_labels), bool)
    return cam_labels[keep], cams[keep]


def tag_cam_labels(cam_labels, cams, num_classes, *, alpha=TAG_CAM_LABEL_DEFAULTS["alpha"],
                   threshold=TAG_CAM_LABEL_DEFAULTS["threshold"], background_class=0):
    """
    (H, W) uint8 stage-A label of an image with image tags, from the CAMs (C, H, W) of the
    label values `cam_labels` (the image's classes). Rule in the module docstring.
    """
    labels, maps = _foreground(cam_labels, cams, background_class)
    h, w = np.asarray(cams).shape[1:]
    if len(labels) == 0:
        return np.full((h, w), background_class, np.uint8)
    peak = maps.reshape(len(labels), -1).max(axis=1)
    maps = np.clip(maps / np.maximum(peak, 1e-12)[:, None, None], 0.0, 1.0)
    background = (1.0 - maps.max(axis=0)) ** alpha
    scores = np.concatenate([background[None], maps], axis=0)
    shares = scores / scores.sum(axis=0, keepdims=True)  # the sum is >= 1/2: b or some CAM is large
    winner = shares.argmax(axis=0)
    values = np.concatenate([[background_class], labels]).astype(np.uint8)
    out = values[winner]
    out[shares.max(axis=0) < threshold] = num_classes
    return out


def box_pixel_ranges(box, height, width):
    """(row0, row1, col0, col1) of the pixels an XYXY box (detectron2 continuous coordinates)
    covers: columns floor(x0) .. ceil(x1) - 1, clipped to the image (docs/datasets.md §3.2)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    c0, r0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
    c1, r1 = min(int(np.ceil(x1)), width), min(int(np.ceil(y1)), height)
    return r0, r1, c0, c1


def box_cam_labels(cam_labels, cams, boxes, box_classes, num_classes, *,
                   threshold=BOX_CAM_LABEL_DEFAULTS["threshold"], background_class=0):
    """
    (H, W) uint8 stage-A label of an image with boxes (N, 4) XYXY of classes `box_classes`
    (N,), from the CAMs (C, H, W) of the label values `cam_labels`. Rule in the module
    docstring. A box class without a CAM raises.
    """
    labels, maps = _foreground(cam_labels, cams, background_class)
    h, w = np.asarray(cams).shape[1:]
    index = {int(c): i for i, c in enumerate(labels.tolist())}
    best = np.full((h, w), -1.0)  # largest normalised CAM of a covering box; -1: no box
    best_class = np.full((h, w), num_classes, np.int64)
    for box, cls in zip(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(box_classes).reshape(-1)):
        cls = int(cls)
        if cls not in index:
            raise ValueError(f"Box of class {cls} but the CAMs cover only the classes {labels.tolist()}")
        r0, r1, c0, c1 = box_pixel_ranges(box, h, w)
        if r1 <= r0 or c1 <= c0:
            continue
        inside = maps[index[cls], r0:r1, c0:c1]
        low, high = inside.min(), inside.max()
        normalised = (inside - low) / (high - low) if high > low else np.zeros_like(inside)
        region_best = best[r0:r1, c0:c1]
        wins = normalised > region_best
        region_best[wins] = normalised[wins]
        best_class[r0:r1, c0:c1][wins] = cls
    out = np.full((h, w), background_class, np.uint8)
    covered = best >= 0
    out[covered] = np.where(best[covered] >= threshold, best_class[covered], num_classes).astype(np.uint8)
    return out
