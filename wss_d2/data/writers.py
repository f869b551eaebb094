"""
Writing files the way wss_d2 reads them: label maps as single-channel PNGs of raw label values,
dicts (tags, CAMs) as np.save'd pickles. Both go through a temporary name, so an interrupted
run never leaves a half-written file.
"""
import os

import numpy as np
from PIL import Image

__all__ = ["write_label_png", "write_pickled_dict"]


def write_label_png(label, path):
    """
    Save an (H, W) label map with values 0..255 as a grayscale (`L`) PNG. The file goes
    through a temporary name, so an interrupted preparation never leaves a half-written PNG.
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"{path}: a label map must be (H, W), got shape {label.shape}")
    if label.dtype != np.uint8:
        if label.size and (label.min() < 0 or label.max() > 255):
            raise ValueError(f"{path}: label values {label.min()}..{label.max()} do not fit in a uint8 PNG")
        label = label.astype(np.uint8)
    tmp = path + ".tmp.png"
    Image.fromarray(np.ascontiguousarray(label), mode="L").save(tmp)
    os.replace(tmp, path)
    return path


def write_pickled_dict(path, table):
    """Save a dict with np.save (a 0-d object array, as IRN's and SIPE's files; read back by
    `readers.read_pickled_dict`), creating the folder, through a temporary name."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.save(f, np.array(table, dtype=object))
    os.replace(tmp, path)
    return path
