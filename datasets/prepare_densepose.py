#!/usr/bin/env python
"""
DensePose-COCO JSONs -> SPML's body-part label PNGs and lists (docs/datasets.md §9).

Dense part map (15 classes, wss_d2.data.datasets.densepose_parts): a 0 (background) canvas;
for every person with DensePose annotations, its 14 `dp_masks` RLEs (256 x 256, box-relative)
are decoded into one part map (part i+1 where mask i is set, later parts overwrite), resized
with nearest neighbour to the box rounded to pixels, and pasted inside the box where it is
non-zero (later persons overwrite). Persons without DensePose annotations are unknown, not
background: their COCO segmentation is painted 255 (ignore) first, unless
--no-ignore-unannotated.

Point map: a canvas of 15 (unlabelled: the number of classes); each DensePose point gets the
coarse part of its fine `dp_I` at (round(bbox_x + dp_x * bbox_w / 255), round(bbox_y + dp_y *
bbox_h / 255)) (round half up), as a disc of --point-radius (0: single pixels); points outside
the image are dropped, later points overwrite. DensePose annotates points on the body only, so
the point maps carry no background points.

Inputs  <root>/coco/annotations/densepose_{train2014,valminusminival2014,minival2014}.json
        <root>/coco/{train2014,val2014}/<stem>.jpg
Outputs <root>/densepose/images/{train2014,val2014}   symlinks to the COCO folders (if missing)
        <root>/densepose/segcls/densepose/gray/<stem>.png          dense parts (`L`)
        <root>/densepose/segcls/densepose_points/gray/<stem>.png   points (`L`)
        <root>/densepose/<split>.txt          `images/<folder>/<stem>.jpg segcls/densepose/gray/<stem>.png`
        <root>/densepose/<split>_points.txt   `images/<folder>/<stem>.jpg segcls/densepose_points/gray/<stem>.png`

Usage: python datasets/prepare_densepose.py [--root DATASETS] [--split train2014 ...] [--point-radius 0]
"""
import argparse
import contextlib
import multiprocessing
import os

import cv2
import numpy as np
import pycocotools.mask as mask_utils

from wss_d2.data.coco_format import decode_segmentation, load_coco_json
from wss_d2.data.datasets.densepose_parts import DENSEPOSE_PART_CLASSES, FINE_TO_COARSE
from wss_d2.data.datasets.paths import get_datasets_root
from wss_d2.data.datasets.registration import IGNORE_LABEL
from wss_d2.data.weak_labels.points import paint_footprints
from wss_d2.data.writers import write_label_png

NUM_PARTS = len(DENSEPOSE_PART_CLASSES)  # 15, background included
NUM_DP_MASKS = NUM_PARTS - 1
POINTS_UNLABELED = NUM_PARTS
DP_BOX_SCALE = 255.0  # dp_x, dp_y are box-relative in 0..255
# split -> COCO image folder; real counts (docs/datasets.md §9.1): images, persons with DensePose
IMAGE_FOLDER = {"train2014": "train2014", "valminusminival2014": "val2014", "minival2014": "val2014"}
EXPECTED = {"train2014": (26437, 39210), "valminusminival2014": (5984, 7297), "minival2014": (1508, 2243)}
DENSE_DIR = os.path.join("segcls", "densepose", "gray")
POINTS_DIR = os.path.join("segcls", "densepose_points", "gray")
MAX_SHOWN = 5

_FINE_TO_COARSE_LUT = np.zeros(max(FINE_TO_COARSE) + 1, dtype=np.uint8)
_FINE_TO_COARSE_LUT[list(FINE_TO_COARSE)] = list(FINE_TO_COARSE.values())


def round_half_up(values):
    return np.floor(np.asarray(values, dtype=np.float64) + 0.5).astype(np.int64)


def person_mask(segmentation, height, width):
    """A COCO person's mask; persons without a segmentation (an empty polygon list) have none."""
    if isinstance(segmentation, list) and not segmentation:
        return np.zeros((height, width), dtype=np.uint8)
    return decode_segmentation(segmentation, height, width)


def decode_dp_masks(dp_masks):
    """The box-relative part map (values 0..14) of one person's 14 `dp_masks` RLEs."""
    if not isinstance(dp_masks, list) or len(dp_masks) != NUM_DP_MASKS:
        raise ValueError(f"'dp_masks' must be a list of {NUM_DP_MASKS} RLEs or empty entries")
    parts = None
    for index, rle in enumerate(dp_masks):
        if not rle:
            continue
        mask = mask_utils.decode(rle)
        if parts is None:
            parts = np.zeros(mask.shape, dtype=np.uint8)
        elif mask.shape != parts.shape:
            raise ValueError(f"'dp_masks' entries have different sizes {parts.shape} and {mask.shape}")
        parts[mask > 0] = index + 1
    return parts


def box_pixels(bbox):
    """Rounded [x0, y0, x1, y1) pixel box of a COCO [x, y, w, h] box."""
    x, y, w, h = (float(v) for v in bbox)
    return tuple(int(v) for v in round_half_up([x, y, x + w, y + h]))


def paste_parts(label, parts, bbox):
    """Resize a part map to the rounded box and write its non-zero pixels inside the image."""
    x0, y0, x1, y1 = box_pixels(bbox)
    if x1 <= x0 or y1 <= y0:
        return
    resized = cv2.resize(parts, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    height, width = label.shape
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    crop = resized[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    region = label[cy0:cy1, cx0:cx1]
    region[crop > 0] = crop[crop > 0]


@contextlib.contextmanager
def annotation_context(ann):
    """Re-raise any error (pycocotools raises bare Exceptions) as a ValueError naming the annotation."""
    try:
        yield
    except Exception as e:
        raise ValueError(f"annotation id {ann.get('id')}: {e!r}") from e


def dense_part_map(height, width, annotations, ignore_unannotated=True):
    """Part labels of one image: 255 on persons without DensePose, then the annotated parts."""
    label = np.zeros((height, width), dtype=np.uint8)
    if ignore_unannotated:
        for ann in annotations:
            if "dp_masks" not in ann:
                with annotation_context(ann):
                    label[person_mask(ann["segmentation"], height, width) > 0] = IGNORE_LABEL
    for ann in annotations:
        if "dp_masks" in ann:
            with annotation_context(ann):
                parts = decode_dp_masks(ann["dp_masks"])
                if parts is not None:
                    paste_parts(label, parts, ann["bbox"])
    return label


def disc_offsets(radius):
    """(dy, dx) of the pixels with dy^2 + dx^2 <= radius^2."""
    steps = np.arange(-radius, radius + 1)
    dy, dx = np.meshgrid(steps, steps, indexing="ij")
    inside = dy**2 + dx**2 <= radius**2
    return dy[inside], dx[inside]


def point_map(height, width, annotations, radius=0):
    """Point labels of one image and the number of points written and dropped (outside)."""
    label = np.full((height, width), POINTS_UNLABELED, dtype=np.uint8)
    dy, dx = disc_offsets(radius)
    written = dropped = 0
    for ann in annotations:
        if "dp_I" not in ann:
            continue
        with annotation_context(ann):
            written_one, dropped_one = _paint_points(label, ann, dy, dx)
        written += written_one
        dropped += dropped_one
    return label, written, dropped


def _paint_points(label, ann, dy, dx):
    """Paint one person's points (discs of offsets dy, dx); returns (written, dropped) counts."""
    height, width = label.shape
    fields = {key: np.asarray(ann.get(key, []), dtype=np.float64).reshape(-1) for key in ("dp_x", "dp_y", "dp_I")}
    if not len(fields["dp_x"]) == len(fields["dp_y"]) == len(fields["dp_I"]):
        raise ValueError(f"dp_x, dp_y, dp_I have different lengths {[len(v) for v in fields.values()]}")
    fine = fields["dp_I"]
    bad = (fine != np.round(fine)) | (fine < 1) | (fine > len(_FINE_TO_COARSE_LUT) - 1)
    if bad.any():
        raise ValueError(f"dp_I has values {np.unique(fine[bad])[:10].tolist()} outside the fine parts 1..24")
    coarse = _FINE_TO_COARSE_LUT[fine.astype(np.int64)]
    x_box, y_box, w_box, h_box = (float(v) for v in ann["bbox"])
    xs = round_half_up(x_box + fields["dp_x"] * w_box / DP_BOX_SCALE)
    ys = round_half_up(y_box + fields["dp_y"] * h_box / DP_BOX_SCALE)
    inside = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
    paint_footprints(label, xs[inside], ys[inside], coarse[inside], dy, dx)  # later points overwrite
    return int(inside.sum()), int((~inside).sum())


def convert_image(task):
    """Write the dense and point PNGs of one image; returns (persons with DensePose, points, dropped)."""
    stem, height, width, annotations, json_file, dense_file, points_file, ignore_unannotated, radius = task
    try:
        dense = dense_part_map(height, width, annotations, ignore_unannotated)
        points, written, dropped = point_map(height, width, annotations, radius)
    except ValueError as e:
        raise ValueError(f"{json_file}, image {stem}: {e}") from e
    write_label_png(dense, dense_file)
    write_label_png(points, points_file)
    return sum("dp_masks" in ann for ann in annotations), written, dropped


def run_pool(tasks, workers):
    if workers <= 1:
        return [convert_image(task) for task in tasks]
    with multiprocessing.Pool(workers) as pool:
        return list(pool.imap(convert_image, tasks, chunksize=16))


def link_images(densepose_root, coco_root, folder):
    """Make `<densepose>/images/<folder>` point at the COCO image folder unless it exists."""
    link = os.path.join(densepose_root, "images", folder)
    if os.path.lexists(link):
        if not os.path.isdir(link):
            raise FileNotFoundError(f"{link} exists but is not a folder (or is a broken link)")
        return link
    target = os.path.join(coco_root, folder)
    if not os.path.isdir(target):
        raise FileNotFoundError(f"COCO image folder not found: {target} (needed for {link})")
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.symlink(os.path.relpath(target, os.path.dirname(link)), link)
    return link


def prepare_split(root, split, ignore_unannotated=True, point_radius=0, workers=1):
    """Convert one DensePose split; returns the sorted image stems of its lists."""
    coco_root = os.path.join(root, "coco")
    densepose_root = os.path.join(root, "densepose")
    json_file = os.path.join(coco_root, "annotations", f"densepose_{split}.json")
    data = load_coco_json(json_file, ("images", "annotations"), "DensePose-COCO")
    folder = IMAGE_FOLDER[split]
    image_dir = link_images(densepose_root, coco_root, folder)

    annotations_of_image = {}
    for ann in data["annotations"]:
        annotations_of_image.setdefault(ann["image_id"], []).append(ann)
    images = sorted(data["images"], key=lambda img: img["file_name"])
    missing = [img["file_name"] for img in images if not os.path.isfile(os.path.join(image_dir, img["file_name"]))]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} images of {json_file} are missing from {image_dir}: {missing[:MAX_SHOWN]}"
        )

    for sub_dir in (DENSE_DIR, POINTS_DIR):
        os.makedirs(os.path.join(densepose_root, sub_dir), exist_ok=True)
    stems = [os.path.splitext(img["file_name"])[0] for img in images]
    tasks = [
        (
            stem,
            int(img["height"]),
            int(img["width"]),
            annotations_of_image.get(img["id"], []),
            json_file,
            os.path.join(densepose_root, DENSE_DIR, stem + ".png"),
            os.path.join(densepose_root, POINTS_DIR, stem + ".png"),
            ignore_unannotated,
            point_radius,
        )
        for stem, img in zip(stems, images)
    ]
    results = run_pool(tasks, workers)

    for suffix, label_dir in (("", DENSE_DIR), ("_points", POINTS_DIR)):
        with open(os.path.join(densepose_root, f"{split}{suffix}.txt"), "w") as f:
            for stem in stems:
                f.write(f"images/{folder}/{stem}.jpg {label_dir}/{stem}.png\n")
    persons = sum(r[0] for r in results)
    points = sum(r[1] for r in results)
    dropped = sum(r[2] for r in results)
    expected_images, expected_persons = EXPECTED[split]
    print(
        f"{split}: {len(stems)} images, {persons} persons with DensePose "
        f"(real: {expected_images:,} / {expected_persons:,}); {points} points written, "
        f"{dropped} outside the image dropped; lists {split}.txt, {split}_points.txt"
    )
    return stems


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", help="datasets root (default: $WSS_DATASETS, $DETECTRON2_DATASETS, ./datasets)")
    parser.add_argument("--split", nargs="+", choices=tuple(IMAGE_FOLDER), default=list(IMAGE_FOLDER))
    parser.add_argument("--point-radius", type=int, default=0, help="disc radius of each point (0: one pixel)")
    parser.add_argument(
        "--no-ignore-unannotated",
        dest="ignore_unannotated",
        action="store_false",
        help="leave persons without DensePose annotations as background 0 instead of 255",
    )
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="processes")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.point_radius < 0:
        raise ValueError(f"--point-radius {args.point_radius} must be >= 0")
    root = get_datasets_root(args.root)
    for split in args.split:
        prepare_split(root, split, args.ignore_unannotated, args.point_radius, args.workers)


if __name__ == "__main__":
    main()
