"""
Image-level tags in the `cls_labels*.npy` format of IRN, SIPE, ToCo and MCC
(docs/datasets.md §3.1): a 0-d object array wrapping a dict
{image id: float32 multi-hot vector over the foreground classes, no background slot}.
IRN keys are int32 ids without the underscore (2007000032); the others are str ids.
"""
import re

import numpy as np

from ..readers import read_pickled_dict
from ..writers import write_pickled_dict

__all__ = ["load_image_tags", "normalize_voc_image_id", "write_image_tags", "tags_from_label_map"]

_VOC_ID = re.compile(r"^(\d{4})_(\d{6})$")


def normalize_voc_image_id(key):
    """
    '2007_000032' for both VOC key styles ('2007_000032' and IRN's 2007000032). Other integer
    keys (COCO image ids in some repositories) become their decimal string, e.g. 42 -> '42'.
    """
    if isinstance(key, (int, np.integer)):
        digits = str(int(key))
        if len(digits) == 10 and _VOC_ID.match(f"{digits[:4]}_{digits[4:]}"):
            return f"{digits[:4]}_{digits[4:]}"
        return digits
    return str(key)


def load_image_tags(npy_file, num_foreground_classes):
    """
    {image id: sorted foreground label values (1..num_foreground_classes)} from a tag file.
    Vector position k is label value k + 1, as in every cls_labels file. Raises, naming the
    file and the image, on a vector of the wrong length or with values other than 0 and 1.
    """
    table = read_pickled_dict(npy_file, "Image-tag file")
    if table is None:
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


def write_image_tags(npy_file, tags, num_foreground_classes, int_keys=False):
    """
    Write {image id: foreground label values (1..num_foreground_classes)} in the cls_labels
    format: a 0-d object array of {key: float32 multi-hot vector (num_foreground_classes,)},
    position k = label value k + 1. Keys are str ids (SIPE/ToCo/MCC style), or with
    `int_keys` IRN's int32 ids without the underscore (2007_000032 -> 2007000032).
    """
    table = {}
    for image_id, values in tags.items():
        values = np.asarray(list(values), dtype=np.int64)
        bad = values[(values < 1) | (values > num_foreground_classes)]
        if bad.size:
            raise ValueError(
                f"Image tags of {image_id} hold label values {sorted(set(bad.tolist()))} outside the "
                f"foreground values 1..{num_foreground_classes} (writing {npy_file})"
            )
        vector = np.zeros(num_foreground_classes, dtype=np.float32)
        vector[values - 1] = 1.0
        if int_keys:
            match = _VOC_ID.match(str(image_id))
            if match is None:
                raise ValueError(
                    f"Image id {image_id!r} is not a VOC id (YYYY_NNNNNN), so it has no IRN int32 key "
                    f"(writing {npy_file})"
                )
            key = np.int32(match.group(1) + match.group(2))
        else:
            key = str(image_id)
        table[key] = vector
    return write_pickled_dict(npy_file, table)  # a 0-d object array, as the real files


def tags_from_label_map(label, num_classes, ignore_label=255, background_class=0):
    """
    Sorted label values present in a label map, without the background class and the ignore
    label (ToCo's tags-from-mask rule). Raises on values that are neither a class nor ignore.
    """
    values = np.unique(np.asarray(label))
    bad = values[(values >= num_classes) & (values != ignore_label)]
    if bad.size:
        raise ValueError(
            f"Label map has values {bad.tolist()[:10]} outside the class ids 0..{num_classes - 1} "
            f"and the ignore label {ignore_label}"
        )
    keep = values[(values != ignore_label) & (values < num_classes)]
    if background_class is not None:
        keep = keep[keep != background_class]
    return [int(v) for v in keep]
