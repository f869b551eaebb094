"""
Reading images and label maps with errors that name the file.

Label PNGs are read as raw indices. detectron2's DatasetMapper converts them to "L", which
maps a palette PNG's colours to luminance (VOC class 1 becomes 38, 255 becomes 220).
"""
import os
import pickle

import numpy as np
from PIL import Image, UnidentifiedImageError

from detectron2.data import detection_utils

# single-channel modes whose pixel values are the stored indices
_INDEX_MODES = ("P", "L", "I;16", "I")


def read_image(file_name, image_format):
    """An (H, W, C) uint8 image, as detectron2's `read_image`, with clear errors."""
    try:
        return detection_utils.read_image(file_name, format=image_format)
    except FileNotFoundError:
        raise FileNotFoundError(f"Image file not found: {file_name}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"Cannot decode image {file_name}: {e}") from e


def read_image_size(file_name):
    """(height, width) of an image from its header, without decoding the pixels."""
    try:
        with Image.open(file_name) as image:
            width, height = image.size
    except FileNotFoundError:
        raise FileNotFoundError(f"Image file not found: {file_name}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"Cannot decode image {file_name}: {e}") from e
    return height, width


def read_label_map(file_name):
    """An (H, W) integer array of the label values stored in a single-channel PNG."""
    try:
        with Image.open(file_name) as label:
            if label.mode not in _INDEX_MODES:
                raise ValueError(
                    f"Label map {file_name} has PIL mode {label.mode!r}; expected a "
                    f"single-channel PNG of class indices (one of {_INDEX_MODES})"
                )
            return np.asarray(label).copy()
    except FileNotFoundError:
        raise FileNotFoundError(f"Label map not found: {file_name}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"Cannot decode label map {file_name}: {e}") from e


def check_label_values(label, num_classes, ignore_label, file_name):
    """Raise if `label` holds a value that is neither a class id (< num_classes) nor ignore."""
    bad = (label >= num_classes) & (label != ignore_label)
    if bad.any():
        values = np.unique(label[bad])[:10].tolist()
        raise ValueError(
            f"Label map {file_name} has values {values} outside the class ids "
            f"0..{num_classes - 1} and the ignore label {ignore_label}"
        )


def check_same_size(image, label, image_file, label_file):
    if image.shape[:2] != label.shape[:2]:
        raise ValueError(
            f"Label map {label_file} is {label.shape[1]}x{label.shape[0]} (WxH) but its image "
            f"{image_file} is {image.shape[1]}x{image.shape[0]}"
        )


def read_pickled_dict(npy_file, what):
    """
    The dict stored in a `.npy` as a 0-d object array (the cls_labels and IRN CAM formats:
    `np.save(path, dict)`), or None when the file holds something else. `what` names the
    kind of file in errors ("Image-tag file", "CAM file").
    """
    if not os.path.isfile(npy_file):
        raise FileNotFoundError(f"{what} not found: {npy_file}")
    try:
        content = np.load(npy_file, allow_pickle=True)  # these formats are pickled dicts
        table = content.item() if content.shape == () else None
    except (OSError, ValueError, pickle.UnpicklingError) as e:
        raise ValueError(f"Cannot read {what.lower()} {npy_file}: {e}") from e
    return table if isinstance(table, dict) else None
