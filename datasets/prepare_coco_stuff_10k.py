#!/usr/bin/env python
"""
COCO-Stuff-10K v1.0 release -> MaskFormer's detectron2 layout (docs/datasets.md §5).

The v1.0 annotations are MATLAB v7.3 (HDF5) files whose label map `S` is stored transposed
(W x H) with MATLAB's 1-based values: 1 = unlabeled, 2..172 = the 171 classes. The PNG value
is S - 2 in uint8 arithmetic, so 1 wraps to 255 (ignore) and 2..172 become 0..170.

Inputs  <root>/coco/coco_stuff_10k/{annotations/<stem>.mat, imageLists/{train,test}.txt, images/<stem>.jpg}
Outputs <root>/coco/coco_stuff_10k/images_detectron2/{train,test}/<stem>.jpg       (copies)
        <root>/coco/coco_stuff_10k/annotations_detectron2/{train,test}/<stem>.png  (uint8 `L`)

Usage: python datasets/prepare_coco_stuff_10k.py [--root DATASETS] [--split train test]
"""
import argparse
import os
import shutil

import h5py
import numpy as np

from wss_d2.data.datasets.paths import get_datasets_root
from wss_d2.data.readers import read_image_size
from wss_d2.data.writers import write_label_png

MAX_RAW_VALUE = 172  # 1 unlabeled + 171 classes
EXPECTED_IMAGES = {"train": 9000, "test": 1000}


def read_stems(list_file):
    if not os.path.isfile(list_file):
        raise FileNotFoundError(f"COCO-Stuff-10K image list not found: {list_file}")
    with open(list_file) as f:
        stems = [line.strip() for line in f if line.strip()]
    if not stems:
        raise ValueError(f"COCO-Stuff-10K image list {list_file} lists no images")
    return stems


def read_v1_label(mat_file):
    """The (H, W) v1.0 label map `S` of a MATLAB v7.3 file, values checked to lie in 1..172."""
    if not os.path.isfile(mat_file):
        raise FileNotFoundError(f"COCO-Stuff-10K annotation not found: {mat_file}")
    try:
        with h5py.File(mat_file, "r") as mat:
            if "S" not in mat:
                raise ValueError(f"{mat_file} has no label map 'S' (keys: {sorted(mat.keys())})")
            stored = mat["S"][()]
    except OSError as e:
        raise ValueError(
            f"Cannot read {mat_file} as a MATLAB v7.3 (HDF5) file; the v1.0 release of "
            f"COCO-Stuff-10K is required: {e}"
        ) from e
    if stored.ndim != 2:
        raise ValueError(f"{mat_file}: 'S' has shape {stored.shape}; expected a 2-D label map")
    label = stored.T  # MATLAB is column-major: h5py sees W x H
    bad = ~np.isin(label, np.arange(1, MAX_RAW_VALUE + 1))
    if bad.any():
        values = np.unique(label[bad])[:10].tolist()
        raise ValueError(f"{mat_file}: 'S' has values {values} outside the v1.0 range 1..{MAX_RAW_VALUE}")
    return label.astype(np.uint8)


def prepare_split(stuff_root, split):
    """Copy the images and convert the labels of one split; returns the number of images."""
    stems = read_stems(os.path.join(stuff_root, "imageLists", f"{split}.txt"))
    image_out = os.path.join(stuff_root, "images_detectron2", split)
    label_out = os.path.join(stuff_root, "annotations_detectron2", split)
    os.makedirs(image_out, exist_ok=True)
    os.makedirs(label_out, exist_ok=True)
    for stem in stems:
        image_file = os.path.join(stuff_root, "images", stem + ".jpg")
        mat_file = os.path.join(stuff_root, "annotations", stem + ".mat")
        if not os.path.isfile(image_file):
            raise FileNotFoundError(f"COCO-Stuff-10K image not found: {image_file}")
        height, width = read_image_size(image_file)
        raw = read_v1_label(mat_file)
        if raw.shape != (height, width):
            raise ValueError(
                f"Label {mat_file} is {raw.shape[1]}x{raw.shape[0]} (WxH) but its image "
                f"{image_file} is {width}x{height}"
            )
        write_label_png(raw - np.uint8(2), os.path.join(label_out, stem + ".png"))  # uint8: 1 -> 255
        shutil.copyfile(image_file, os.path.join(image_out, stem + ".jpg"))
    print(f"{label_out}: {len(stems)} label PNGs, {image_out}: {len(stems)} images (real: {EXPECTED_IMAGES[split]:,})")
    return len(stems)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", help="datasets root (default: $WSS_DATASETS, $DETECTRON2_DATASETS, ./datasets)")
    parser.add_argument("--split", nargs="+", choices=("train", "test"), default=["train", "test"])
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    stuff_root = os.path.join(get_datasets_root(args.root), "coco", "coco_stuff_10k")
    if not os.path.isdir(stuff_root):
        raise FileNotFoundError(f"COCO-Stuff-10K folder not found: {stuff_root}")
    for split in args.split:
        prepare_split(stuff_root, split)


if __name__ == "__main__":
    main()
