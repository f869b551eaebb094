#!/usr/bin/env python
"""
Build PASCAL VOC 2012's SBD-augmented labels (docs/datasets.md §2, §10):

    VOC2012/SegmentationClassAug/<id>.png         grayscale (L) label values 0..20, 255 void
    VOC2012/ImageSets/Segmentation/train_aug.txt  (VOC train + SBD train + SBD val) - VOC val

for every id of train_aug and VOC val. Labels come from VOC's SegmentationClass (palette PNG,
written back as raw indices) where it has the image, else from SBD's
benchmark_RELEASE/dataset/cls/<id>.mat (GTcls.Segmentation). The val labels are always VOC's.
Running it again rewrites the same files.

Usage:
    python datasets/prepare_voc_sbd.py [--sbd-root DIR] [--voc-root DIR]
Defaults: <datasets root>/benchmark_RELEASE and <datasets root>/VOC2012 (or VOCdevkit/VOC2012),
where the datasets root is $WSS_DATASETS, else $DETECTRON2_DATASETS, else ./datasets.
"""
import argparse
import os

import numpy as np
import scipy.io
from tqdm import tqdm

from wss_d2.data.datasets.loading import read_split_ids
from wss_d2.data.datasets.paths import get_datasets_root
from wss_d2.data.datasets.pascal_voc import VOC_CLASSES, find_voc_root
from wss_d2.data.datasets.registration import IGNORE_LABEL
from wss_d2.data.readers import check_label_values, read_image_size, read_label_map
from wss_d2.data.writers import write_label_png

EXPECTED_TRAIN_AUG = 10582  # real counts, docs/datasets.md §2.3
EXPECTED_LABELS = 12031


def find_sbd_dataset_dir(sbd_root):
    """The SBD folder holding cls/, train.txt and val.txt: `sbd_root` itself or its dataset/."""
    for candidate in (os.path.join(sbd_root, "dataset"), sbd_root):
        if os.path.isdir(os.path.join(candidate, "cls")):
            return candidate
    raise FileNotFoundError(
        f"SBD not found: neither {os.path.join(sbd_root, 'dataset', 'cls')} nor "
        f"{os.path.join(sbd_root, 'cls')} exists. Unpack benchmark.tgz and pass --sbd-root "
        "<...>/benchmark_RELEASE."
    )


def read_sbd_label(mat_file):
    """The uint8 (H, W) class map of an SBD cls/<id>.mat (mat["GTcls"][0]["Segmentation"][0])."""
    if not os.path.isfile(mat_file):
        raise FileNotFoundError(f"SBD label not found: {mat_file}")
    try:
        mat = scipy.io.loadmat(mat_file)
    except (OSError, ValueError, TypeError, NotImplementedError, scipy.io.matlab.MatReadError) as e:
        raise ValueError(f"Cannot read SBD label {mat_file}: {e}") from e
    try:
        label = np.asarray(mat["GTcls"][0]["Segmentation"][0])
    except (KeyError, IndexError, ValueError, TypeError) as e:
        raise ValueError(
            f"SBD label {mat_file} has no GTcls.Segmentation field ({type(e).__name__}: {e})"
        ) from e
    if label.ndim != 2 or not np.issubdtype(label.dtype, np.integer):
        raise ValueError(
            f"SBD label {mat_file}: GTcls.Segmentation is {label.dtype} {label.shape}, "
            "expected an integer (H, W) map"
        )
    check_label_values(label, len(VOC_CLASSES), IGNORE_LABEL, mat_file)
    return label.astype(np.uint8)


def read_voc_label(png_file):
    label = read_label_map(png_file)
    check_label_values(label, len(VOC_CLASSES), IGNORE_LABEL, png_file)
    return label.astype(np.uint8)


def write_list(ids, list_file):
    tmp_file = list_file + ".tmp"
    with open(tmp_file, "w") as f:
        f.write("".join(i + "\n" for i in ids))
    os.replace(tmp_file, list_file)


def prepare_voc_sbd(voc_root, sbd_root):
    """Write SegmentationClassAug/ and train_aug.txt; returns the counts that it prints."""
    sbd_dir = find_sbd_dataset_dir(sbd_root)
    list_dir = os.path.join(voc_root, "ImageSets", "Segmentation")
    voc_train = read_split_ids(os.path.join(list_dir, "train.txt"))
    voc_val = set(read_split_ids(os.path.join(list_dir, "val.txt")))
    sbd_ids = [i for s in ("train", "val") for i in read_split_ids(os.path.join(sbd_dir, s + ".txt"))]
    train_aug = sorted((set(voc_train) | set(sbd_ids)) - voc_val)

    out_dir = os.path.join(voc_root, "SegmentationClassAug")
    os.makedirs(out_dir, exist_ok=True)
    counts = {"voc": 0, "sbd": 0}
    all_ids = sorted(set(train_aug) | voc_val)
    for image_id in tqdm(all_ids, desc="SegmentationClassAug", unit="label"):
        voc_png = os.path.join(voc_root, "SegmentationClass", image_id + ".png")
        if os.path.isfile(voc_png):
            source, label = voc_png, read_voc_label(voc_png)
            counts["voc"] += 1
        elif image_id in voc_val:
            raise FileNotFoundError(f"VOC val label not found: {voc_png} (val labels always come from VOC)")
        else:
            source = os.path.join(sbd_dir, "cls", image_id + ".mat")
            label = read_sbd_label(source)
            counts["sbd"] += 1
        jpg = os.path.join(voc_root, "JPEGImages", image_id + ".jpg")
        height, width = read_image_size(jpg)
        if label.shape != (height, width):
            raise ValueError(
                f"Label {source} is {label.shape[1]}x{label.shape[0]} (WxH) "
                f"but its image {jpg} is {width}x{height}"
            )
        write_label_png(label, os.path.join(out_dir, image_id + ".png"))

    write_list(train_aug, os.path.join(list_dir, "train_aug.txt"))
    counts.update(labels=len(all_ids), train_aug=len(train_aug))
    print(
        f"{out_dir}: {counts['labels']} label PNGs ({counts['voc']} from VOC SegmentationClass, "
        f"{counts['sbd']} from SBD); the full dataset gives {EXPECTED_LABELS:,}\n"
        f"{os.path.join(list_dir, 'train_aug.txt')}: {counts['train_aug']} ids; "
        f"the full dataset gives {EXPECTED_TRAIN_AUG:,}"
    )
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sbd-root", help="SBD's benchmark_RELEASE folder (default: <datasets root>/benchmark_RELEASE)"
    )
    parser.add_argument(
        "--voc-root", help="the VOC2012 folder (default: <datasets root>/VOC2012 or VOCdevkit/VOC2012)"
    )
    args = parser.parse_args(argv)
    voc_root = args.voc_root or find_voc_root()
    sbd_root = args.sbd_root or os.path.join(get_datasets_root(), "benchmark_RELEASE")
    prepare_voc_sbd(voc_root, sbd_root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
