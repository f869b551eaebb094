#!/usr/bin/env python
"""
ADE20K SceneParsing (ADEChallengeData2016) labels -> detectron2's `annotations_detectron2`
(docs/datasets.md §6): value - 1 in uint8 arithmetic, so 0 ("other") becomes 255
(ignore) and classes 1..150 become 0..149.

Inputs  <root>/ADEChallengeData2016/annotations/{training,validation}/*.png   (uint8 `L`)
Outputs <root>/ADEChallengeData2016/annotations_detectron2/{training,validation}/*.png

Usage: python datasets/prepare_ade20k.py [--root DATASETS] [--split training validation]
"""
import argparse
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from wss_d2.data.datasets.paths import get_datasets_root
from wss_d2.data.writers import write_label_png

NUM_CLASSES = 150
EXPECTED_FILES = {"training": 20210, "validation": 2000}


def read_ade_label(path):
    """An original ADE20K label map: single-channel uint8, values 0..150."""
    try:
        with Image.open(path) as image:
            label = np.asarray(image)
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"Cannot decode ADE20K label {path}: {e}") from e
    if label.dtype != np.uint8 or label.ndim != 2:
        raise ValueError(
            f"ADE20K label {path} is {label.dtype} with shape {label.shape}; expected a "
            f"single-channel uint8 PNG"
        )
    if label.max(initial=0) > NUM_CLASSES:
        values = np.unique(label[label > NUM_CLASSES])[:10].tolist()
        raise ValueError(f"ADE20K label {path} has values {values} above {NUM_CLASSES}")
    return label


def prepare_split(ade_root, split):
    """Shift every label of one split; returns the number of files written."""
    in_dir = os.path.join(ade_root, "annotations", split)
    out_dir = os.path.join(ade_root, "annotations_detectron2", split)
    if not os.path.isdir(in_dir):
        raise FileNotFoundError(f"ADE20K annotation folder not found: {in_dir}")
    names = sorted(n for n in os.listdir(in_dir) if n.endswith(".png"))
    if not names:
        raise FileNotFoundError(f"No .png label files in {in_dir}")
    os.makedirs(out_dir, exist_ok=True)
    for name in names:
        label = read_ade_label(os.path.join(in_dir, name))
        write_label_png(label - np.uint8(1), os.path.join(out_dir, name))  # uint8: 0 -> 255
    print(f"{out_dir}: {len(names)} label PNGs (real ADE20K {split}: {EXPECTED_FILES[split]:,})")
    return len(names)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", help="datasets root (default: $WSS_DATASETS, $DETECTRON2_DATASETS, ./datasets)")
    parser.add_argument("--split", nargs="+", choices=("training", "validation"), default=["training", "validation"])
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    ade_root = os.path.join(get_datasets_root(args.root), "ADEChallengeData2016")
    for split in args.split:
        prepare_split(ade_root, split)


if __name__ == "__main__":
    main()
