"""
Simulating weak labels from full masks, so label budgets can be studied on any dataset
with dense labels (datasets/make_weak_labels.py is the command-line front end).

Every kind is drawn per image from its own generator seeded by (seed, image id), so the
output does not depend on the order or the subset of images processed. Objects are the
8-connected regions of one class (a semantic map has no instance ids); void (ignore) pixels
are never labelled.

Kinds and their real formats (written by `write_weak_labels` in a VOC-style layout):
    tags       cls_labels.npy                 image-level tags (docs/datasets.md §3.1)
    boxes      Annotations/<id>.xml           VOC XML, one box per object (docs/datasets.md §3.2)
    points     point/segcls/<id>.png          n points per object + n background points, 3-px
               points.json                    discs (TEL/AGMM); What's-the-Point JSON (docs/datasets.md §3.4)
    scribbles  scribble/seginst[_<f>]/<id>.png  a contiguous fraction f of each region's
                                              skeleton (background included), width 3 (docs/datasets.md §3.3);
                                              several fractions give one folder each
    clicks     <N>clicks/<id>.png             N single pixels per image, uniform over valid
                                              pixels (Cityscapes recipe, docs/datasets.md §8.3)
Sparse PNGs hold K (number of classes) on unlabelled pixels, the class id on labelled ones.
"""
import json
import logging
import os
import zlib

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, shortest_path

from ..writers import write_label_png
from .boxes import boxes_from_label_map, write_voc_xml
from .kinds import SIMULATED_KINDS
from .points import draw_discs
from .tags import tags_from_label_map, write_image_tags

__all__ = [
    "simulate_points",
    "simulate_scribbles",
    "simulate_clicks",
    "scribble_folder",
    "write_weak_labels",
    "WEAK_LABEL_LAYOUT",
]

logger = logging.getLogger(__name__)

_EIGHT = np.ones((3, 3), dtype=bool)
WEAK_LABEL_LAYOUT = {
    "tags": "cls_labels.npy",
    "boxes": "Annotations",
    "points": os.path.join("point", "segcls"),
    "points_json": "points.json",
    "scribbles": os.path.join("scribble", "seginst"),
    "clicks": "{n}clicks",
}


def scribble_folder(fraction):
    """scribble/seginst for whole strokes, scribble/seginst_<f> for a fraction f of them."""
    return WEAK_LABEL_LAYOUT["scribbles"] + ("" if fraction == 1 else f"_{fraction:g}")


def image_rng(seed, image_id):
    """The generator of one image: independent of processing order."""
    return np.random.default_rng([seed, zlib.crc32(str(image_id).encode())])


def _regions(label, num_classes, ignore_label, include_background, background_class):
    """(region id map (0 = none), class of each region id) over the 8-connected regions."""
    regions = np.zeros(label.shape, dtype=np.int64)
    classes = [0]
    for class_id in np.unique(label):
        if class_id == ignore_label or class_id >= num_classes:
            continue
        if not include_background and class_id == background_class:
            continue
        ids, count = ndimage.label(label == class_id, structure=_EIGHT)
        regions[ids > 0] = ids[ids > 0] + len(classes) - 1
        classes.extend([int(class_id)] * count)
    return regions, np.asarray(classes, dtype=np.int64)


def _sample_per_group(groups, n, rng):
    """Indices of up to n uniformly drawn members of each group (vectorised)."""
    order = np.lexsort((rng.random(len(groups)), groups))
    sorted_groups = groups[order]
    first = np.searchsorted(sorted_groups, sorted_groups, side="left")
    rank = np.arange(len(groups)) - first
    return order[rank < n]


def simulate_points(label, rng, *, points_per_object, num_classes, ignore_label=255, background_class=0,
                    background_points=None):
    """
    (N, 3) array of (x, y, class): `points_per_object` distinct pixels drawn uniformly in each
    object (all of them if it is smaller) and `background_points` (default: the same n) in the
    background, as annotators click (What's the Point) and the background clicks of TEL.
    """
    objects = _regions(label, num_classes, ignore_label, False, background_class)
    return _sample_points(label, objects, rng, points_per_object, background_class, background_points)


def _sample_points(label, objects, rng, points_per_object, background_class, background_points):
    """simulate_points on the (region map, region classes) `objects` of `label`."""
    regions, classes = objects
    rows, cols = np.nonzero(regions)
    chosen = _sample_per_group(regions[rows, cols], points_per_object, rng)
    picks = [np.stack([cols[chosen], rows[chosen], classes[regions[rows[chosen], cols[chosen]]]], 1)]
    if background_class is not None:
        n_bg = points_per_object if background_points is None else background_points
        bg_rows, bg_cols = np.nonzero(label == background_class)
        n_bg = min(n_bg, len(bg_rows))
        pick = rng.choice(len(bg_rows), size=n_bg, replace=False)
        picks.append(np.stack([bg_cols[pick], bg_rows[pick], np.full(n_bg, background_class)], 1))
    return np.concatenate(picks).astype(np.int64)


def simulate_clicks(label, rng, *, num_clicks, num_classes, ignore_label=255):
    """(N, 3) array of (x, y, class): N distinct pixels drawn uniformly among valid pixels."""
    rows, cols = np.nonzero((label < num_classes) & (label != ignore_label))
    n = min(num_clicks, len(rows))
    pick = rng.choice(len(rows), size=n, replace=False)
    return np.stack([cols[pick], rows[pick], label[rows[pick], cols[pick]]], 1).astype(np.int64)


def _skeleton_graph(skeleton):
    """Sparse adjacency of the 8-connected skeleton pixels, and their (rows, cols)."""
    rows, cols = np.nonzero(skeleton)
    index = -np.ones(skeleton.shape, dtype=np.int64)
    index[rows, cols] = np.arange(len(rows))
    padded = np.pad(index, 1, constant_values=-1)
    src, dst = [], []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == dx == 0:
                continue
            neighbour = padded[rows + 1 + dy, cols + 1 + dx]
            keep = neighbour >= 0
            src.append(np.arange(len(rows))[keep])
            dst.append(neighbour[keep])
    src, dst = np.concatenate(src), np.concatenate(dst)
    graph = coo_matrix((np.ones(len(src)), (src, dst)), shape=(len(rows), len(rows))).tocsr()
    return graph, rows, cols


def _hop_distances(graph, start):
    """Hop counts along the skeleton from `start` (inf where unreachable)."""
    return shortest_path(graph, directed=False, unweighted=True, indices=start)


def simulate_scribbles(label, rng, *, fraction, num_classes, ignore_label=255, background_class=0, width=3):
    """
    A uint8 sparse map (K = unlabelled): for every region (background included, as ScribbleSup
    scribbles it) one stroke along the longest path of its skeleton, cut to a contiguous
    `fraction` of its length from a random end (fraction 0 leaves one pixel: SPML's "length 0"
    click), drawn `width` px wide inside the region.
    Returns (map, stroke-path pixels kept, stroke-path pixels in all).
    """
    strokes = _scribble_strokes(label, rng, num_classes, ignore_label, background_class)
    return _draw_scribble(strokes, fraction, num_classes, width)


def _scribble_strokes(label, rng, num_classes, ignore_label, background_class):
    """
    The full stroke of every region, which any fraction cuts: the regions, their classes, the
    skeleton pixels (rows, cols), which of them lie on the stroke, each one's hop distance from
    the stroke's (randomly chosen) start, and the stroke length of its region.
    """
    from skimage.morphology import skeletonize

    regions, classes = _regions(label, num_classes, ignore_label, True, background_class)
    skeleton = skeletonize(regions > 0) & (regions > 0)
    # a region can have no skeleton pixel left (thin or tiny): use its deepest pixel instead
    missing = np.setdiff1d(np.arange(1, len(classes)), np.unique(regions[skeleton]))
    if len(missing):
        depth = ndimage.distance_transform_edt(regions > 0)
        for region in missing:
            flat = np.flatnonzero(regions == region)
            deepest = flat[np.argmax(depth.ravel()[flat])]
            skeleton.ravel()[deepest] = True
    graph, rows, cols = _skeleton_graph(skeleton)
    _, component = connected_components(graph, directed=False)
    on_path = np.zeros(len(rows), dtype=bool)
    from_start = np.zeros(len(rows))
    stroke_length = np.zeros(len(rows))
    for comp in np.unique(component):  # one stroke per region: a loop over regions, not pixels
        members = np.flatnonzero(component == comp)
        start = members[rng.integers(len(members))]
        end_a = members[np.argmax(_hop_distances(graph, start)[members])]
        from_a = _hop_distances(graph, end_a)[members]
        end_b = members[np.argmax(from_a)]
        from_b = _hop_distances(graph, end_b)[members]
        # the stroke follows the skeleton's longest path (the pixels on a shortest a-b path)
        length = from_a.max()
        path = from_a + from_b == length
        if rng.random() < 0.5:  # start the kept piece from either end
            from_a = from_b
        on_path[members[path]] = True
        from_start[members] = from_a
        stroke_length[members] = length
    return regions, classes, rows, cols, on_path, from_start, stroke_length


def _draw_scribble(strokes, fraction, num_classes, width):
    """The `fraction` of every stroke from its start, `width` px wide: (map, kept, total)."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"scribble fraction must be in [0, 1], got {fraction}")
    regions, classes, rows, cols, on_path, from_start, stroke_length = strokes
    kept = on_path & (from_start <= fraction * stroke_length)
    scribble = np.full(regions.shape, num_classes, dtype=np.uint8)
    seeds = np.zeros(regions.shape, dtype=np.int64)
    seeds[rows[kept], cols[kept]] = regions[rows[kept], cols[kept]]
    # widen to `width` px, never leaving the region the stroke belongs to
    grown = ndimage.grey_dilation(seeds, footprint=np.ones((width, width), dtype=bool))
    inside = (grown > 0) & (grown == regions)
    scribble[inside] = classes[grown[inside]]
    scribble[seeds > 0] = classes[seeds[seeds > 0]]
    return scribble, int(kept.sum()), int(on_path.sum())


def write_weak_labels(records, output_dir, *, kinds, num_classes, class_names, ignore_label=255,
                      background_class=0, seed=0, points_per_object=1, background_points=None,
                      scribble_fraction=1.0, num_clicks=20):
    """
    Simulate and write the requested `kinds` for `records` (dataset dicts with image_id and
    sem_seg_file_name) into `output_dir`; returns the summary also written to
    `output_dir/weak_labels.json` (parameters, counts and achieved densities).
    `scribble_fraction` is one fraction or a sequence of them (a folder each).
    """
    from ..readers import read_label_map

    unknown = set(kinds) - set(SIMULATED_KINDS)
    if unknown:
        raise ValueError(f"Unknown weak-label kinds {sorted(unknown)}")
    if "tags" in kinds and background_class != 0:
        raise ValueError("cls_labels tag files have no background slot and need the background class at 0")
    fractions = [float(f) for f in np.atleast_1d(scribble_fraction)]
    scribble_dirs = {f: scribble_folder(f) for f in fractions}
    dirs = {
        "boxes": WEAK_LABEL_LAYOUT["boxes"],
        "points": WEAK_LABEL_LAYOUT["points"],
        "scribbles": scribble_dirs[fractions[0]] if len(fractions) == 1 else list(scribble_dirs.values()),
        "clicks": WEAK_LABEL_LAYOUT["clicks"].format(n=num_clicks),
    }
    for kind in kinds:
        for folder in np.atleast_1d(dirs.get(kind, [])):
            os.makedirs(os.path.join(output_dir, folder), exist_ok=True)
    tags, points_json = {}, {}
    stats = {"images": 0, "points": 0, "objects": 0, "clicks": 0, "skeleton_kept": 0, "skeleton_total": 0}
    skeleton_kept = dict.fromkeys(fractions, 0)
    for record in records:
        image_id = record["image_id"]
        label = read_label_map(record["sem_seg_file_name"])
        height, width = label.shape
        # one generator per kind keeps each kind reproducible on its own
        seeds = image_rng(seed, image_id).integers(2**63, size=3)
        points_rng, click_rng = np.random.default_rng(seeds[0]), np.random.default_rng(seeds[2])
        stats["images"] += 1
        if "tags" in kinds:
            tags[image_id] = tags_from_label_map(label, num_classes, ignore_label, background_class)
        if "boxes" in kinds:
            boxes = boxes_from_label_map(label, ignore_label, background_class)
            write_voc_xml(
                os.path.join(output_dir, dirs["boxes"], image_id + ".xml"),
                image_id, width, height, [(class_names[c], box) for c, box in boxes],
            )
        if "points" in kinds:
            objects = _regions(label, num_classes, ignore_label, False, background_class)
            points = _sample_points(label, objects, points_rng, points_per_object, background_class, background_points)
            stats["points"] += len(points)
            stats["objects"] += len(objects[1]) - 1
            discs = draw_discs(np.full(label.shape, num_classes, np.uint8), points[:, 0], points[:, 1],
                               points[:, 2].astype(np.uint8), radius=1)
            write_label_png(discs, os.path.join(output_dir, dirs["points"], image_id + ".png"))
            points_json[image_id] = [
                {"x": int(x), "y": int(y), "cls": int(c), "rank": int(r)}
                for (x, y, c), r in zip(points.tolist(), _rank_within_class(points[:, 2]))
            ]
        if "scribbles" in kinds:
            # one set of strokes cut to every fraction: a shorter stroke is a piece of the longer one
            strokes = _scribble_strokes(label, np.random.default_rng(seeds[1]), num_classes, ignore_label,
                                        background_class)
            for fraction in fractions:
                scribble, kept, total = _draw_scribble(strokes, fraction, num_classes, width=3)
                skeleton_kept[fraction] += kept
                write_label_png(scribble, os.path.join(output_dir, scribble_dirs[fraction], image_id + ".png"))
            stats["skeleton_total"] += total
        if "clicks" in kinds:
            clicks = simulate_clicks(label, click_rng, num_clicks=num_clicks,
                                     num_classes=num_classes, ignore_label=ignore_label)
            stats["clicks"] += len(clicks)
            canvas = np.full(label.shape, num_classes, np.uint8)
            canvas[clicks[:, 1], clicks[:, 0]] = clicks[:, 2]
            write_label_png(canvas, os.path.join(output_dir, dirs["clicks"], image_id + ".png"))
    if "tags" in kinds:
        write_image_tags(os.path.join(output_dir, WEAK_LABEL_LAYOUT["tags"]), tags, num_classes - 1)
    if "points" in kinds:
        with open(os.path.join(output_dir, WEAK_LABEL_LAYOUT["points_json"]), "w") as f:
            json.dump(points_json, f)
    # kept stroke pixels: a number for one fraction, per fraction for several
    stats["skeleton_kept"] = (skeleton_kept[fractions[0]] if len(fractions) == 1
                              else {f"{f:g}": n for f, n in skeleton_kept.items()})
    summary = {
        "seed": seed,
        "kinds": sorted(kinds),
        "num_classes": num_classes,
        "unlabeled_value": num_classes,
        "points_per_object": points_per_object,
        "background_points": points_per_object if background_points is None else background_points,
        "scribble_fraction": fractions[0] if len(fractions) == 1 else fractions,
        "num_clicks": num_clicks,
        "folders": {k: v for k, v in dirs.items() if k in kinds},
        "stats": stats,
    }
    with open(os.path.join(output_dir, "weak_labels.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def _rank_within_class(classes):
    """1, 2, 3, ... numbering the points of each class, as What's-the-Point's `rank`."""
    ranks = np.zeros(len(classes), dtype=np.int64)
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)
        ranks[idx] = np.arange(1, len(idx) + 1)
    return ranks.tolist()

