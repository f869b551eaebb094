#!/usr/bin/env python
"""
COCO 2014 instances -> VOC-style 81-class semantic label PNGs, image tags and split lists, as
used by the WSSS repositories (MCC `parse_coco.py`, ToCo, SIPE; docs/datasets.md §4).

Label values: 0 = background, i = the i-th COCO category in ascending category-id order
(1..80). Every annotation of an image, polygons and crowd RLEs alike, is decoded with
pycocotools and painted only where the map is still 0, so the first annotation in the JSON's
order wins where instances overlap. Every image gets a PNG (grayscale `L`, image size).

Inputs  <root>/coco/annotations/instances_{train,val}2014.json
        <root>/coco/{train,val}2014/<stem>.jpg   (or MCC's <root>/coco/JPEGImages/{train,val}2014/)
Outputs <root>/coco/SegmentationClass/{train2014,val2014}/<file stem>.png
        <root>/coco/cls_labels_coco.npy   dict file stem -> float32 (80,) multi-hot (label k+1
                                          at index k), read back from the written PNGs
        <root>/coco/ImageSets/{train,val}.txt   stems of the images with >= 1 annotation

Usage: python datasets/prepare_coco_voc_style.py [--root DATASETS] [--split train val] [--workers 8]
"""
import argparse
import multiprocessing
import os
import sys

import numpy as np
from PIL import Image

from wss_d2.data.coco_format import decode_segmentation, load_coco_json
from wss_d2.data.datasets.paths import get_datasets_root
from wss_d2.data.writers import write_label_png, write_pickled_dict

NUM_CLASSES = 81  # background + 80 COCO categories
TAGS_FILE = "cls_labels_coco.npy"
# real COCO 2014 counts (docs/datasets.md §4.1, §4.3): all images / images with an annotation
EXPECTED_IMAGES = {"train": 82783, "val": 40504}
EXPECTED_LISTED = {"train": 82081, "val": 40137}
MAX_SHOWN = 5


def build_tasks(data, json_file, image_dir, label_dir):
    """One task per image: (stem, output PNG, height, width, [(ann id, class, segmentation)])."""
    cat_ids = sorted(c["id"] for c in data["categories"])
    class_of_category = {cat_id: index + 1 for index, cat_id in enumerate(cat_ids)}
    if len(cat_ids) != NUM_CLASSES - 1:
        raise ValueError(f"{json_file} has {len(cat_ids)} categories; COCO 2014 has {NUM_CLASSES - 1}")

    annotations_of_image = {}
    for ann in data["annotations"]:  # JSON order = pycocotools getAnnIds order (first wins)
        if ann.get("category_id") not in class_of_category:
            raise ValueError(
                f"{json_file}: annotation id {ann.get('id')} has category_id "
                f"{ann.get('category_id')!r}, not one of the file's categories"
            )
        if "segmentation" not in ann:
            raise ValueError(f"{json_file}: annotation id {ann.get('id')} has no 'segmentation'")
        annotations_of_image.setdefault(ann["image_id"], []).append(
            (ann.get("id"), class_of_category[ann["category_id"]], ann["segmentation"])
        )
    image_ids = {img["id"] for img in data["images"]}
    orphans = sorted(set(annotations_of_image) - image_ids)
    if orphans:
        raise ValueError(f"{json_file}: annotations refer to image ids {orphans[:MAX_SHOWN]} not in 'images'")

    tasks = []
    for img in data["images"]:
        stem = os.path.splitext(img["file_name"])[0]
        tasks.append(
            (
                stem,
                os.path.join(label_dir, stem + ".png"),
                int(img["height"]),
                int(img["width"]),
                annotations_of_image.get(img["id"], []),
                json_file,
            )
        )
    missing = [t[0] + ".jpg" for t in tasks if not os.path.isfile(os.path.join(image_dir, t[0] + ".jpg"))]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} images of {json_file} are missing from {image_dir}: {missing[:MAX_SHOWN]}"
        )
    return tasks


def paint_labels(height, width, annotations, stem, json_file):
    """The label map of one image: annotations painted where still 0 (first one wins)."""
    label = np.zeros((height, width), dtype=np.uint8)
    for ann_id, class_index, segmentation in annotations:
        try:
            mask = decode_segmentation(segmentation, height, width)
        except Exception as e:
            raise ValueError(
                f"{json_file}: cannot decode the segmentation of annotation id {ann_id} "
                f"(image {stem}): {e}"
            ) from e
        if mask.shape != (height, width):
            raise ValueError(
                f"{json_file}: annotation id {ann_id} of image {stem} decodes to a "
                f"{mask.shape[1]}x{mask.shape[0]} mask; the image is {width}x{height}"
            )
        label[(mask > 0) & (label == 0)] = class_index
    return label


def convert_image(task, skip_existing=False):
    """Write one label PNG; return (stem, number of annotations, sorted label values > 0)."""
    stem, out_file, height, width, annotations, json_file = task
    if skip_existing and os.path.isfile(out_file):
        label = np.asarray(Image.open(out_file))
    else:
        label = paint_labels(height, width, annotations, stem, json_file)
        write_label_png(label, out_file)
    present = np.unique(label)
    return stem, len(annotations), present[(present != 0) & (present != 255)]


def _convert_image_skip(task):
    return convert_image(task, skip_existing=True)


def run_tasks(tasks, workers, skip_existing):
    function = _convert_image_skip if skip_existing else convert_image
    if workers <= 1:
        return [function(task) for task in tasks]
    with multiprocessing.Pool(workers) as pool:
        return list(pool.imap_unordered(function, tasks, chunksize=32))


def update_tags(tags_file, tags):
    """Merge `tags` into the dict saved in `tags_file` (a 0-d object array, np.save of a dict)."""
    merged = {}
    if os.path.isfile(tags_file):
        merged = np.load(tags_file, allow_pickle=True).item()
    merged.update(tags)
    write_pickled_dict(tags_file, merged)
    return merged


def prepare_split(coco_root, split, workers=1, skip_existing=False):
    """Convert one split ("train" or "val"); returns the stems written to its list."""
    split_year = f"{split}2014"
    json_file = os.path.join(coco_root, "annotations", f"instances_{split_year}.json")
    image_dir = os.path.join(coco_root, split_year)
    if not os.path.isdir(image_dir) and os.path.isdir(os.path.join(coco_root, "JPEGImages", split_year)):
        image_dir = os.path.join(coco_root, "JPEGImages", split_year)  # MCC's layout
    label_dir = os.path.join(coco_root, "SegmentationClass", split_year)
    if not os.path.isdir(image_dir):
        raise FileNotFoundError(f"COCO image folder not found: {image_dir}")
    data = load_coco_json(json_file, ("images", "annotations", "categories"), "COCO instances")
    tasks = build_tasks(data, json_file, image_dir, label_dir)
    os.makedirs(label_dir, exist_ok=True)

    results = run_tasks(tasks, workers, skip_existing)
    listed = sorted(stem for stem, num_annotations, _ in results if num_annotations > 0)
    tags = {}
    for stem, num_annotations, present in results:
        if num_annotations > 0:
            vector = np.zeros(NUM_CLASSES - 1, dtype=np.float32)
            vector[present.astype(np.int64) - 1] = 1.0
            tags[stem] = vector
    empty_tags = sum(1 for v in tags.values() if not v.any())

    list_dir = os.path.join(coco_root, "ImageSets")
    os.makedirs(list_dir, exist_ok=True)
    list_file = os.path.join(list_dir, f"{split}.txt")
    with open(list_file, "w") as f:
        f.writelines(stem + "\n" for stem in listed)
    all_tags = update_tags(os.path.join(coco_root, TAGS_FILE), tags)

    print(f"{label_dir}: {len(results)} label PNGs (real COCO {split_year}: {EXPECTED_IMAGES[split]:,})")
    print(f"{list_file}: {len(listed)} images with annotations (real: {EXPECTED_LISTED[split]:,})")
    print(
        f"{os.path.join(coco_root, TAGS_FILE)}: {len(tags)} {split} entries, {len(all_tags)} in all "
        f"(real train + val: {sum(EXPECTED_LISTED.values()):,})"
    )
    if empty_tags:
        print(f"warning: {empty_tags} listed {split} images have annotations but no labelled pixel", file=sys.stderr)
    return listed


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", help="datasets root (default: $WSS_DATASETS, $DETECTRON2_DATASETS, ./datasets)")
    parser.add_argument("--split", nargs="+", choices=("train", "val"), default=["train", "val"])
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="processes")
    parser.add_argument(
        "--skip-existing", action="store_true", help="keep label PNGs already written (resume); tags are read from them"
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    coco_root = os.path.join(get_datasets_root(args.root), "coco")
    for split in args.split:
        prepare_split(coco_root, split, workers=args.workers, skip_existing=args.skip_existing)


if __name__ == "__main__":
    main()
