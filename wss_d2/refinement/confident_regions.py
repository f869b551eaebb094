"""
Confident-region pseudo labels from localisation maps with a background channel (SIPE's
`cam2ir`, docs/sipe.md §7.1): dense CRF with "labels as unary" on two argmax maps, one with the
background channel as is (confident foreground) and one with it scaled by BG_SCALE (0.5:
confident background); foreground from the first, background where both agree, the rest
uncertain (255). These train IRN's boundary branch (VOC) or are the labels (COCO, docs/sipe.md §7.3).
"""
import numpy as np

from ..inference.crf import CRFJob

__all__ = ["ir_label_jobs", "combine_confident_regions"]


def ir_label_jobs(image, cams, cam_labels, *, background_class=0, bg_scale=0.5, gt_prob=0.7):
    """
    The two CRF jobs (confident foreground, confident background) of one image, each a
    CRFJob on the argmax over the channels (values 0..C-1, mapped back by `cam_labels`).
    `cams` (C, H, W) with `cam_labels` (C,) whose entry 0 is the background.
    """
    cams = np.asarray(cams, dtype=np.float32)
    cam_labels = np.asarray(cam_labels).reshape(-1)
    if len(cam_labels) == 0 or cam_labels[0] != background_class:
        raise ValueError(
            f"Confident-region labels need maps with the background ({background_class}) as channel 0; "
            f"got channels {cam_labels.tolist()}"
        )
    fg_argmax = cams.argmax(0)
    # the original scales the caller's array in place (docs/sipe.md §11.21): work on a copy
    scaled = cams.copy()
    scaled[0] *= bg_scale
    bg_argmax = scaled.argmax(0)
    n = len(cam_labels)
    return (
        CRFJob(image=image, labels=fg_argmax.astype(np.int64), n_labels=n, gt_prob=gt_prob),
        CRFJob(image=image, labels=bg_argmax.astype(np.int64), n_labels=n, gt_prob=gt_prob),
    )


def combine_confident_regions(fg_conf, bg_conf, cam_labels, *, ignore_label=255, keep_uncertain=True, background_class=0):
    """
    Label map from the two CRF outputs (channel indices): cam_labels[fg_conf] where it is a
    foreground channel, background where both are background, `ignore_label` elsewhere
    (or background with keep_uncertain=False, COCO's default, docs/sipe.md §7.3).
    """
    cam_labels = np.asarray(cam_labels).reshape(-1)
    label = cam_labels[fg_conf].astype(np.uint8)
    uncertain = (fg_conf == 0) & (bg_conf != 0)
    label[uncertain] = ignore_label if keep_uncertain else background_class
    return label
