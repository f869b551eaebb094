"""
Quality of pseudo labels against the GT of the same images, accumulated image by image:
the mIoU and pixel accuracy of the pixels the pseudo labels label, their coverage, and the
mIoU with the ignored pseudo-label pixels counted as background (SIPE's "+DenseCRF" protocol
for confident-region labels, docs/sipe.md §7.1).
"""
import numpy as np

from ..evaluation import confusion_matrix, segmentation_metrics

__all__ = ["PseudoLabelQuality"]


class PseudoLabelQuality:
    """
    Confusion matrices of pseudo labels against the GT (both label maps of 0..K-1 classes and
    `ignore_label`). `update(label, gt)` per image, then `metrics(class_names)`.
    """

    def __init__(self, num_classes, ignore_label=255, background_class=0):
        """background_class None: no ignore-as-background mIoU (a dataset without a background class)."""
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.background_class = background_class
        self.confusion = np.zeros((num_classes, num_classes), np.int64)
        # ignored pseudo-label pixels counted as background
        self.confusion_as_background = np.zeros((num_classes, num_classes), np.int64)
        self.labelled = 0  # GT-valid pixels that the pseudo labels label
        self.valid = 0  # GT-valid pixels

    def update(self, label, gt):
        """Add one image's pseudo labels and GT (same shape)."""
        ignore, k = self.ignore_label, self.num_classes
        valid = (gt != ignore) & (label != ignore)
        self.labelled += int(valid.sum())
        self.valid += int((gt != ignore).sum())
        self.confusion += confusion_matrix(gt[valid], label[valid], k)
        if self.background_class is not None:
            filled = np.where(label == ignore, self.background_class, label)
            self.confusion_as_background += confusion_matrix(gt[gt != ignore], filled[gt != ignore], k)

    def merge(self, other):
        """Add the counts of another PseudoLabelQuality (e.g. another process's share of the images)."""
        self.confusion += other.confusion
        self.confusion_as_background += other.confusion_as_background
        self.labelled += other.labelled
        self.valid += other.valid
        return self

    def metrics(self, class_names):
        """
        {"mIoU", "pACC", "coverage" (%, of the GT-valid pixels), "mIoU_ignore_as_background"}, in
        %; each only when it has pixels to count (no key at all before any GT pixel).
        """
        result = {}
        if self.confusion.sum():
            metrics = segmentation_metrics(self.confusion, class_names)
            # measured on the pixels the pseudo labels label (the ignored ones are reported as coverage)
            result.update(mIoU=metrics["mIoU"], pACC=metrics["pACC"], coverage=100 * self.labelled / max(self.valid, 1))
        if self.confusion_as_background.sum():
            result["mIoU_ignore_as_background"] = segmentation_metrics(self.confusion_as_background, class_names)["mIoU"]
        return result
