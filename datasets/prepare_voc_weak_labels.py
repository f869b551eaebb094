#!/usr/bin/env python
"""
Write PASCAL VOC 2012 weak labels from their raw releases (docs/datasets.md §3):

    --tags            <VOC2012>/cls_labels.npy: image tags of train_aug + val from
                      Annotations/<id>.xml (str keys; --int-keys for IRN's int32 keys)
    --scribbles [SRC] <VOC2012>/scribble/seginst/<id>.png from ScribbleSup XMLs, SRC = a
                      folder of <id>.xml or voc_scribbles.zip
                      (default <datasets root>/voc_scribbles.zip)
    --points [JSON..] <VOC2012>/point/segcls/<id>.png from the What's-the-Point JSON files
                      (default <datasets root>/voc_whats_the_point.json and
                      voc_whats_the_point_bg_from_scribbles.json)

Sparse PNGs are grayscale: label values 0..20 on labelled pixels, the "unlabelled" value
everywhere else (21 = K by default, the wss_d2 convention; --unlabeled-value 255 for
rloss/TEL-style files). Scribbles are width-3 polylines with 3-px vertex discs, points 3-px
discs (TEL/AGMM rasterisation); points outside their image are dropped and counted.

Usage:
    python datasets/prepare_voc_weak_labels.py [--voc-root DIR] --tags [--int-keys]
    python datasets/prepare_voc_weak_labels.py --scribbles voc_scribbles.zip --points
"""
import argparse
import functools
import os
import zipfile

import numpy as np

from wss_d2.data.datasets.loading import read_split_ids
from wss_d2.data.datasets.paths import get_datasets_root
from wss_d2.data.datasets.pascal_voc import VOC_CLASSES, find_voc_root
from wss_d2.data.readers import read_image_size
from wss_d2.data.weak_labels import (
    drop_points_outside,
    load_whats_the_point,
    rasterize_points,
    rasterize_scribbles,
    read_scribblesup_xml,
    read_voc_xml,
    write_image_tags,
)
from wss_d2.data.writers import write_label_png

NUM_CLASSES = len(VOC_CLASSES)  # 21, background included
DEFAULT_SCRIBBLES = "voc_scribbles.zip"
DEFAULT_POINTS = ("voc_whats_the_point.json", "voc_whats_the_point_bg_from_scribbles.json")
SCRIBBLE_DIR = os.path.join("scribble", "seginst")
POINT_DIR = os.path.join("point", "segcls")


def image_size(jpg_file):
    """(width, height) of an image from its header, or None when the image does not exist."""
    if not os.path.isfile(jpg_file):
        return None
    height, width = read_image_size(jpg_file)
    return width, height


def write_voc_tags(voc_root, tags_file, splits=("train_aug", "val"), int_keys=False):
    """Tags of every image of `splits` from its Annotations XML; returns {id: label values}."""
    list_dir = os.path.join(voc_root, "ImageSets", "Segmentation")
    ids = sorted(set().union(*(read_split_ids(os.path.join(list_dir, s + ".txt")) for s in splits)))
    tags = {}
    for image_id in ids:
        parsed = read_voc_xml(os.path.join(voc_root, "Annotations", image_id + ".xml"), VOC_CLASSES)
        tags[image_id] = sorted({obj["category_id"] for obj in parsed["objects"]})
    write_image_tags(tags_file, tags, NUM_CLASSES - 1, int_keys=int_keys)
    present = np.asarray([v for values in tags.values() for v in values], dtype=np.int64)
    per_class = np.bincount(present, minlength=NUM_CLASSES)[1:]
    print(
        f"{tags_file}: tags of {len(tags)} images ({'int32' if int_keys else 'str'} keys; the full "
        f"train_aug + val gives 12,031), {sum(not v for v in tags.values())} without any class\n"
        f"  images per class (aeroplane..tvmonitor): {per_class.tolist()}"
    )
    return tags


def _scribble_files(source):
    """(image id, opener, name for messages) of every <id>.xml in a folder or a zip."""
    if os.path.isdir(source):
        for file_name in sorted(os.listdir(source)):
            if file_name.endswith(".xml"):
                path = os.path.join(source, file_name)
                yield file_name[: -len(".xml")], functools.partial(open, path, "rb"), path
    elif os.path.isfile(source):
        if not zipfile.is_zipfile(source):
            raise ValueError(f"Scribble source {source} is neither a folder of XML files nor a zip")
        with zipfile.ZipFile(source) as archive:
            for member in sorted(archive.namelist()):
                base = os.path.basename(member)
                if base.endswith(".xml") and not member.startswith("__MACOSX/") and not base.startswith("._"):
                    yield base[: -len(".xml")], functools.partial(archive.open, member), f"{source}:{member}"
    else:
        raise FileNotFoundError(f"Scribble source not found: {source}")


def write_voc_scribbles(voc_root, source, out_dir, unlabeled_value=NUM_CLASSES, thickness=3):
    """Rasterise every ScribbleSup XML of `source` into out_dir/<id>.png; returns the counts."""
    os.makedirs(out_dir, exist_ok=True)
    counts = {"images": 0, "scribbles": 0, "without_jpeg": 0}
    for image_id, opener, name in _scribble_files(source):
        with opener() as f:
            width, height, scribbles = read_scribblesup_xml(f, name=name)
        jpg = os.path.join(voc_root, "JPEGImages", image_id + ".jpg")
        size = image_size(jpg)
        if size is None:
            counts["without_jpeg"] += 1
        elif size != (width, height):
            raise ValueError(
                f"Scribble file {name} gives size {width}x{height} (WxH) "
                f"but image {jpg} is {size[0]}x{size[1]}"
            )
        label = rasterize_scribbles(
            scribbles, height, width, unlabeled_value=unlabeled_value, thickness=thickness
        )
        write_label_png(label, os.path.join(out_dir, image_id + ".png"))
        counts["images"] += 1
        counts["scribbles"] += len(scribbles)
    if not counts["images"]:
        raise ValueError(f"Scribble source {source} holds no <id>.xml files")
    print(
        f"{out_dir}: {counts['images']} scribble PNGs, {counts['scribbles']} scribbles "
        f"(ScribbleSup covers at least the 10,582 train_aug images); "
        f"{counts['without_jpeg']} without a JPEG in JPEGImages (size taken from the XML)"
    )
    return counts


def write_voc_points(voc_root, json_files, out_dir, unlabeled_value=NUM_CLASSES, radius=1):
    """Rasterise the What's-the-Point clicks of every image that has a JPEG; returns the counts."""
    points = load_whats_the_point(json_files)
    os.makedirs(out_dir, exist_ok=True)
    counts = {"images": 0, "points": 0, "dropped_outside": 0, "without_jpeg": []}
    for image_id in sorted(points):
        image_points = points[image_id]
        bad = np.unique(image_points[:, 2][image_points[:, 2] >= NUM_CLASSES]).astype(int)
        if bad.size:
            raise ValueError(
                f"Point files {list(json_files)}: image {image_id} has class values {bad.tolist()} "
                f"outside the VOC label values 0..{NUM_CLASSES - 1}"
            )
        size = image_size(os.path.join(voc_root, "JPEGImages", image_id + ".jpg"))
        if size is None:
            counts["without_jpeg"].append(image_id)
            continue
        width, height = size
        kept, dropped = drop_points_outside(image_points, height, width)
        label = rasterize_points(kept, height, width, unlabeled_value=unlabeled_value, radius=radius)
        write_label_png(label, os.path.join(out_dir, image_id + ".png"))
        counts["images"] += 1
        counts["points"] += len(kept)
        counts["dropped_outside"] += dropped
    missing = counts["without_jpeg"]
    print(
        f"{out_dir}: {counts['images']} point PNGs with {counts['points']} points; "
        f"{counts['dropped_outside']} points outside their image dropped (the real files have 63); "
        f"{len(missing)} images skipped without a JPEG"
        + (f" (e.g. {', '.join(missing[:5])})" if missing else "")
    )
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--voc-root", help="VOC2012 folder (default: <datasets root>/VOC2012 or VOCdevkit/...)")
    parser.add_argument("--output-root", help="folder for cls_labels.npy, scribble/, point/ (default: VOC)")
    parser.add_argument("--tags", action="store_true", help="write image tags from Annotations/*.xml")
    parser.add_argument("--tags-file", help="tag file to write (default: <output root>/cls_labels.npy)")
    parser.add_argument("--int-keys", action="store_true", help="IRN's int32 keys (2007000032), not str ids")
    parser.add_argument("--tag-splits", nargs="+", default=["train_aug", "val"], help="lists of images to tag")
    parser.add_argument("--scribbles", nargs="?", const="", metavar="SRC", help="XML folder or .zip")
    parser.add_argument("--points", nargs="*", metavar="JSON", help="What's-the-Point JSON files")
    parser.add_argument(
        "--unlabeled-value", type=int, default=NUM_CLASSES,
        help=f"unlabelled pixels of sparse PNGs (default {NUM_CLASSES} = K; 255 for rloss/TEL style)",
    )
    parser.add_argument("--scribble-thickness", type=int, default=3, help="scribble width in pixels (odd)")
    parser.add_argument("--point-radius", type=int, default=1, help="disc radius (1: 3-px discs, 0: one pixel)")
    args = parser.parse_args(argv)
    if not (args.tags or args.scribbles is not None or args.points is not None):
        parser.error("nothing to do: give --tags, --scribbles and/or --points")
    if not NUM_CLASSES <= args.unlabeled_value <= 255:
        parser.error(f"--unlabeled-value must be {NUM_CLASSES}..255 (0..{NUM_CLASSES - 1} are class values)")

    voc_root = args.voc_root or find_voc_root()
    output_root = args.output_root or voc_root
    if args.tags:
        tags_file = args.tags_file or os.path.join(output_root, "cls_labels.npy")
        write_voc_tags(voc_root, tags_file, args.tag_splits, args.int_keys)
    if args.scribbles is not None:
        source = args.scribbles or os.path.join(get_datasets_root(), DEFAULT_SCRIBBLES)
        out_dir = os.path.join(output_root, SCRIBBLE_DIR)
        write_voc_scribbles(voc_root, source, out_dir, args.unlabeled_value, args.scribble_thickness)
    if args.points is not None:
        json_files = args.points or [os.path.join(get_datasets_root(), name) for name in DEFAULT_POINTS]
        out_dir = os.path.join(output_root, POINT_DIR)
        write_voc_points(voc_root, json_files, out_dir, args.unlabeled_value, args.point_radius)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
