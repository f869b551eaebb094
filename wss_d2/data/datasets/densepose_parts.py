"""
DensePose-COCO body-part label space used by SPML (docs/datasets.md §9.2, Appendix F):
15 classes, 0 = background, 1..14 = the coarse parts in the order of DensePose's `dp_masks`.

The fine part index `dp_I` (1..24) of DensePose points maps to a coarse part through
FINE_TO_COARSE. A horizontal flip turns a left part into the right one, so flipping a part
label map also remaps its values through FLIP_PART_MAP.
"""
import numpy as np

DENSEPOSE_PART_CLASSES = (
    "background",
    "torso",
    "right hand",
    "left hand",
    "left foot",
    "right foot",
    "right thigh",
    "left thigh",
    "right leg",
    "left leg",
    "left arm",
    "right arm",
    "left forearm",
    "right forearm",
    "head",
)

# DensePose fine part (dp_I, 1..24) -> coarse part (1..14); fine pairs are front/back halves
FINE_TO_COARSE = {
    1: 1, 2: 1,  # torso
    3: 2,  # right hand
    4: 3,  # left hand
    5: 4,  # left foot
    6: 5,  # right foot
    7: 6, 9: 6,  # upper leg right
    8: 7, 10: 7,  # upper leg left
    11: 8, 13: 8,  # lower leg right
    12: 9, 14: 9,  # lower leg left
    15: 10, 17: 10,  # upper arm left
    16: 11, 18: 11,  # upper arm right
    19: 12, 21: 12,  # lower arm left
    20: 13, 22: 13,  # lower arm right
    23: 14, 24: 14,  # head
}

# coarse label value -> its value after a horizontal flip (left <-> right), for values 0..14
FLIP_PART_MAP = (0, 1, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 14)


def flip_part_labels(labels):
    """
    Swap left and right part values of a (horizontally flipped) integer label map; values
    outside 0..14 (unlabelled 15, ignore 255) are kept. Returns a new array of the same dtype.
    """
    labels = np.asarray(labels)
    flipped = labels.copy()
    is_part = (labels >= 0) & (labels < len(FLIP_PART_MAP))
    flipped[is_part] = np.asarray(FLIP_PART_MAP, dtype=labels.dtype)[labels[is_part]]
    return flipped
