#!/usr/bin/env python
"""
Cityscapes fine labels -> `*_gtFine_labelTrainIds.png`, and N-click training labels
(docs/datasets.md §8).

trainIds are drawn from the polygons by cityscapesscripts' own `json2labelImg` (its label
table; 255 for every non-evaluated label), next to each `*_gtFine_polygons.json`.

Clicks (`--clicks 20 50 100`): for each training image, N distinct pixels drawn uniformly
without replacement among the pixels whose trainId is 0..18. The N-click set is the first N
of one random order of those pixels, drawn by a generator seeded from (--seed, image name),
so it does not depend on the processing order, and 20 clicks are a subset of 50 and of 100.
Clicked pixels keep their trainId (single pixels, no dilation); every other pixel is
--unlabeled-value (19, the AGMM convention: unlabelled = number of classes). An image with
fewer valid pixels than N gets all of them (warned and listed in the sidecar).

Inputs  <root>/cityscapes/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_polygons.json
Outputs <root>/cityscapes/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png
        <root>/cityscapes/{N}clicks/<city>_<seq>_<frame>_gtFine_labelTrainIds.png   (flat, `L`)
        <root>/cityscapes/{N}clicks/clicks.json   N, seed, sampler, unlabeled value, counts

Usage: python datasets/prepare_cityscapes.py [--root DATASETS] [--clicks 20 50 100] [--seed 0]
"""
import argparse
import glob
import hashlib
import json
import multiprocessing
import os
import sys

import numpy as np
from PIL import Image

from wss_d2.data.datasets.paths import get_datasets_root
from wss_d2.data.writers import write_label_png

NUM_TRAIN_IDS = 19
POLYGONS_SUFFIX = "_gtFine_polygons.json"
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"
EXPECTED_IMAGES = {"train": 2975, "val": 500, "test": 1525}
CLICK_SAMPLER = "uniform_without_replacement_nested"


def list_polygon_files(cityscapes_root, split):
    """Sorted `<city>/*_gtFine_polygons.json` files of one gtFine split."""
    split_dir = os.path.join(cityscapes_root, "gtFine", split)
    if not os.path.isdir(split_dir):
        raise FileNotFoundError(f"Cityscapes gtFine folder not found: {split_dir}")
    files = sorted(glob.glob(os.path.join(split_dir, "*", "*" + POLYGONS_SUFFIX)))
    if not files:
        raise FileNotFoundError(f"No <city>/*{POLYGONS_SUFFIX} files in {split_dir}")
    return files


def check_polygons(json_file):
    """Fail with the file name on what would make json2labelImg crash or exit."""
    from cityscapesscripts.helpers.labels import name2label

    try:
        with open(json_file) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"Malformed Cityscapes polygons JSON {json_file}: {e}") from e
    for key in ("imgHeight", "imgWidth", "objects"):
        if key not in data:
            raise ValueError(f"Cityscapes polygons JSON {json_file} has no {key!r} key")
    for index, obj in enumerate(data["objects"]):
        if "label" not in obj or "polygon" not in obj:
            raise ValueError(f"{json_file}: object {index} lacks 'label' or 'polygon'")
        if obj.get("deleted"):
            continue
        label = obj["label"]
        if label not in name2label and label.endswith("group"):  # crowd, e.g. cargroup
            label = label[: -len("group")]
        if label not in name2label:
            raise ValueError(f"{json_file}: object {index} has unknown Cityscapes label {obj['label']!r}")


def make_train_ids(json_file):
    """Write the labelTrainIds PNG of one polygons JSON with cityscapesscripts; returns its path."""
    from cityscapesscripts.preparation.json2labelImg import json2labelImg

    check_polygons(json_file)
    out_file = json_file[: -len(POLYGONS_SUFFIX)] + TRAIN_IDS_SUFFIX
    try:
        json2labelImg(json_file, out_file, "trainIds")
    except Exception as e:
        raise ValueError(f"cityscapesscripts could not draw {json_file}: {e}") from e
    return out_file


def image_name(train_ids_file):
    """`<city>_<seq>_<frame>` of a gtFine file."""
    return os.path.basename(train_ids_file)[: -len(TRAIN_IDS_SUFFIX)]


def click_generator(seed, name):
    """A generator that depends only on the seed and the image name (not on processing order)."""
    name_key = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng([seed, name_key])


def read_train_ids(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Cityscapes trainId label not found: {path} (generate it first)")
    with Image.open(path) as image:
        label = np.asarray(image)
    if label.ndim != 2 or label.dtype != np.uint8:
        raise ValueError(f"Cityscapes trainId label {path} is {label.dtype} {label.shape}; expected uint8 `L`")
    return label


def write_clicks(task):
    """Write the click PNGs of one image for every N; returns (name, number of valid pixels)."""
    train_ids_file, click_counts, click_dirs, seed, unlabeled_value = task
    train_ids = read_train_ids(train_ids_file)
    name = image_name(train_ids_file)
    valid = np.flatnonzero(train_ids < NUM_TRAIN_IDS)
    order = valid[click_generator(seed, name).permutation(valid.size)]
    for num_clicks, click_dir in zip(click_counts, click_dirs):
        chosen = order[:num_clicks]
        clicks = np.full(train_ids.shape, unlabeled_value, dtype=np.uint8)
        clicks.flat[chosen] = train_ids.flat[chosen]
        write_label_png(clicks, os.path.join(click_dir, os.path.basename(train_ids_file)))
    return name, int(valid.size)


def run_pool(function, tasks, workers):
    if workers <= 1:
        return [function(task) for task in tasks]
    with multiprocessing.Pool(workers) as pool:
        return list(pool.imap(function, tasks, chunksize=8))


def prepare_train_ids(cityscapes_root, split, workers=1):
    json_files = list_polygon_files(cityscapes_root, split)
    written = run_pool(make_train_ids, json_files, workers)
    print(
        f"{os.path.join(cityscapes_root, 'gtFine', split)}: {len(written)} *{TRAIN_IDS_SUFFIX} "
        f"(real Cityscapes {split}: {EXPECTED_IMAGES[split]:,})"
    )
    return written


def prepare_clicks(cityscapes_root, click_counts, seed=0, unlabeled_value=NUM_TRAIN_IDS, workers=1):
    """Click PNGs and sidecars for every training image; returns {N: folder}."""
    if not 0 <= unlabeled_value <= 255 or unlabeled_value < NUM_TRAIN_IDS:
        raise ValueError(f"--unlabeled-value {unlabeled_value} must be in {NUM_TRAIN_IDS}..255 (0..18 are trainIds)")
    if any(n <= 0 for n in click_counts):
        raise ValueError(f"--clicks {click_counts}: click counts must be positive")
    if seed < 0:
        raise ValueError(f"--seed {seed} must be non-negative")
    click_counts = sorted(set(click_counts))
    json_files = list_polygon_files(cityscapes_root, "train")
    train_ids_files = [f[: -len(POLYGONS_SUFFIX)] + TRAIN_IDS_SUFFIX for f in json_files]
    click_dirs = [os.path.join(cityscapes_root, f"{n}clicks") for n in click_counts]
    for click_dir in click_dirs:
        os.makedirs(click_dir, exist_ok=True)
    tasks = [(f, click_counts, click_dirs, seed, unlabeled_value) for f in train_ids_files]
    valid_counts = dict(run_pool(write_clicks, tasks, workers))

    for num_clicks, click_dir in zip(click_counts, click_dirs):
        short = sorted(name for name, count in valid_counts.items() if count < num_clicks)
        if short:
            print(
                f"warning: {len(short)} training images have fewer than {num_clicks} pixels with "
                f"trainId 0..18 and got all of them: {short[:5]}",
                file=sys.stderr,
            )
        sidecar = {
            "num_clicks": num_clicks,
            "seed": seed,
            "sampler": CLICK_SAMPLER,
            "sampler_description": (
                "per image, the first num_clicks pixels of a uniformly random order of the pixels "
                "with trainId 0..18; numpy default_rng([seed, first 8 bytes (little-endian) of "
                "sha256(<city>_<seq>_<frame>)]).permutation; single pixels, no dilation"
            ),
            "unlabeled_value": unlabeled_value,
            "void_value": None,
            "num_classes": NUM_TRAIN_IDS,
            "source": "gtFine/train/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png",
            "num_images": len(valid_counts),
            "images_with_fewer_valid_pixels": short,
        }
        with open(os.path.join(click_dir, "clicks.json"), "w") as f:
            json.dump(sidecar, f, indent=2)
        print(f"{click_dir}: {len(valid_counts)} click PNGs (real Cityscapes train: {EXPECTED_IMAGES['train']:,})")
    return dict(zip(click_counts, click_dirs))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", help="datasets root (default: $WSS_DATASETS, $DETECTRON2_DATASETS, ./datasets)")
    parser.add_argument(
        "--split", nargs="+", choices=tuple(EXPECTED_IMAGES), default=["train", "val"],
        help="gtFine splits to draw trainIds for",
    )
    parser.add_argument(
        "--clicks", nargs="+", type=int, default=[], help="click counts per training image, e.g. 20 50 100"
    )
    parser.add_argument("--seed", type=int, default=0, help="click sampling seed")
    parser.add_argument(
        "--unlabeled-value", type=int, default=NUM_TRAIN_IDS, help="value of unclicked pixels (19: AGMM's convention)"
    )
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="processes")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cityscapes_root = os.path.join(get_datasets_root(args.root), "cityscapes")
    for split in args.split:
        prepare_train_ids(cityscapes_root, split, workers=args.workers)
    if args.clicks:
        prepare_clicks(cityscapes_root, args.clicks, args.seed, args.unlabeled_value, workers=args.workers)


if __name__ == "__main__":
    main()
