"""
Writing files the way wss_d2 reads them: label maps as single-channel PNGs of raw label values,
dicts (tags, CAMs) as np.save'd pickles. Both go through a temporary name, so an interrupted
run never leaves a half-written file.
"""
import os

import numpy as np
from PIL import Image

__all__ = ["label_palette", "write_label_png", "write_pickled_dict"]


VOID_COLOUR = (224, 224, 192)  # VOC's colour of 255 (object borders, void)


def label_palette(stuff_colors, void_value=255):
    """
    A 256-entry PNG palette (a flat list of 768 ints) from a dataset's `stuff_colors`: class i gets
    stuff_colors[i], the void value VOC's (224, 224, 192), every other index black.
    """
    palette = [0] * 768
    for i, colour in enumerate(list(stuff_colors or [])[:256]):
        palette[3 * i:3 * i + 3] = [int(c) for c in colour]
    if void_value is not None and 0 <= void_value < 256:
        palette[3 * void_value:3 * void_value + 3] = list(VOID_COLOUR)
    return palette


def write_label_png(label, path, palette=None):
    """
    Save an (H, W) label map with values 0..255 as a grayscale (`L`) PNG, or with `palette` (a flat
    list of 768 ints, `label_palette`) as an indexed (`P`) PNG as VOC stores its labels: the same raw
    indices, shown in the dataset's colours by image viewers. The file goes through a temporary name,
    so an interrupted preparation never leaves a half-written PNG.
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"{path}: a label map must be (H, W), got shape {label.shape}")
    if label.dtype != np.uint8:
        if label.size and (label.min() < 0 or label.max() > 255):
            raise ValueError(f"{path}: label values {label.min()}..{label.max()} do not fit in a uint8 PNG")
        label = label.astype(np.uint8)
    tmp = path + ".tmp.png"
    image = Image.fromarray(np.ascontiguousarray(label), mode="L")
    if palette is not None:
        if len(palette) != 768:
            raise ValueError(f"{path}: a PNG palette has 768 entries (256 RGB colours), got {len(palette)}")
        image = image.convert("P")  # keeps the indices
        image.putpalette(palette)
    image.save(tmp)
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
