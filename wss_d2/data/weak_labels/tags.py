"""
Image-level tags in the `cls_labels*.npy` format of IRN, SIPE, ToCo and MCC
(shared/specs/datasets.md §3.1): a 0-d object array wrapping a dict
{image id: float32 multi-hot vector over the foreground classes, no background slot}.
IRN keys are int32 ids without the underscore (2007000032); the others are str ids.
"""
import os
import pickle

import numpy as np

__all__ = ["load_image_tags", "normalize_voc_image_id"]


def normalize_voc_image_id(key):
    """'2007_000032' for both key styles ('2007_000032' and IRN's 2007000032)."""
    if isinstance(key, (int, np.integer)):
        digits = str(int(key))
        if len(digits) != 10:
            raise ValueError(f"integer image id {key} is not a VOC id (4-digit year + 6 digits)")
        return f"{digits[:4]}_{digits[4:]}"
    return str(key)


def load_image_tags(npy_file, num_foreground_classes):
    """
    {image id: sorted foreground label values (1..num_foreground_classes)} from a tag file.
    Vector position k is label value k + 1, as in every cls_labels file. Raises, naming the
    file and the image, on a vector of the wrong length or with values other than 0 and 1.
    """
    if not os.path.isfile(npy_file):
        raise FileNotFoundError(f"Image-tag file not found: {npy_file}")
    try:
        content = np.load(npy_file, allow_pickle=True)  # the format is a pickled dict
        table = content.item() if content.shape == () else None
    except (OSError, ValueError, pickle.UnpicklingError) as e:
        raise ValueError(f"Cannot read image-tag file {npy_file}: {e}") from e
    if not isinstance(table, dict):
        raise ValueError(f"Image-tag file {npy_file} does not hold a dict of image id -> tag vector")
    tags = {}
    for key, vector in table.items():
        image_id = normalize_voc_image_id(key)
        vector = np.asarray(vector).reshape(-1)
        if vector.shape[0] != num_foreground_classes:
            raise ValueError(
                f"Image-tag file {npy_file}: the vector of {image_id} has length {vector.shape[0]}, "
                f"expected {num_foreground_classes} (one per foreground class)"
            )
        if not np.isin(vector, (0, 1)).all():
            raise ValueError(f"Image-tag file {npy_file}: the vector of {image_id} is not multi-hot: {vector}")
        tags[image_id] = (np.flatnonzero(vector) + 1).tolist()
    return tags
