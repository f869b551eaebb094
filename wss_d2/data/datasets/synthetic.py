"""
The bundled synthetic dataset: PASCAL-VOC on-disk format, generated on first use, no download.

Five object classes whose identity needs both shape and texture: each object is a two-tone
texture in a light and a dark shade of a random hue (colour never tells the class); two
classes share the stripe texture (disc vs square), two share the square shape (stripes vs
dots), two share the dot texture (square vs cross). Objects (1-3 per image, of varied
size, rotated, overlapping, with class co-occurrence) lie on cluttered, textured
backgrounds with distractor shapes and lines. Labels follow VOC: palette PNG, 0 background,
1..5 classes, 255 on a 2-pixel band along every label boundary.

Every weak-label kind is simulated from the masks (wss_d2.data.weak_labels.simulate, the
same code as datasets/make_weak_labels.py), so all methods run without downloads.

Layout under `<datasets root>/wss_synthetic/` (root: $WSS_DATASETS, else
$DETECTRON2_DATASETS, else ./datasets):
    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png
    ImageSets/Segmentation/{train,val}.txt
    cls_labels.npy, Annotations/, point/segcls/, points.json, scribble/seginst{,_0.3}/, 20clicks/
    weak_labels.json      # simulator parameters and achieved densities
    wss_synthetic.json    # generator version, seed, counts; written last, marks completion
    overseg_felzenszwalb/<id>.png, overseg.json   # fallback over-segmentations (skimage
                          # Felzenszwalb, weak_labels/overseg.py), written the first time a weak set loads

Registered: wss_synthetic_{train,val} (full masks); wss_synthetic_train_{tags, boxes,
scribbles, scribbles_0.3, points, points_json, clicks, pseudo}, each with overseg_file_name; weak-shot wss_synthetic_{train,val}_ws
(novel classes 4 checkered_triangle and 5 dotted_cross: masks for 1-3 only, tags for all).
"""
import json
import logging
import os
import shutil
import tempfile

import cv2
import numpy as np
from PIL import Image

from .paths import get_datasets_root
from ..weak_labels.kinds import SIMULATED_KINDS
from ..weak_labels.overseg import OVERSEG_PARAMETERS, write_oversegmentations
from ..weak_labels.simulate import write_weak_labels
from .pascal_voc import load_voc_sem_seg, register_voc_weak_labels, voc_colors, voc_palette
from .registration import IGNORE_LABEL, register_sem_seg_dataset

logger = logging.getLogger(__name__)

SYNTHETIC_CLASSES = (
    "background",
    "striped_disc",
    "striped_square",
    "dotted_square",
    "checkered_triangle",
    "dotted_cross",
)
# shape and texture of each foreground class (index = label value)
_CLASS_RECIPES = {
    1: ("disc", "stripes"),
    2: ("square", "stripes"),
    3: ("square", "dots"),
    4: ("triangle", "checker"),
    5: ("cross", "dots"),
}
# class that tends to appear with each class, like person+bicycle in VOC
_PARTNER = {1: 2, 2: 1, 3: 5, 4: 3, 5: 4}
SPLIT_SIZES = {"train": 1000, "val": 100}
GENERATOR_VERSION = 5
DEFAULT_SEED = 0
DIRNAME = "wss_synthetic"
# label budgets of the bundled weak labels (datasets/make_weak_labels.py writes others). Whole
# 3-px strokes label 9.2 % of the pixels of these ~100-px images (3 px is 3 % of their width,
# 0.6 % of VOC's 500); 30 % of the length (SPML's shortest scribbles) labels 2.8 %, which leaves
# room between partial CE and dense labels (README "AGMM on the synthetic data").
SIMULATED_WEAK_LABELS = {"points_per_object": 1, "background_points": 1, "scribble_fraction": (1.0, 0.3),
                         "num_clicks": 20}
NOVEL_CLASSES = (4, 5)
_K = 6  # number of classes, the unlabelled value of the sparse PNGs
SYNTHETIC_WEAK_LABELS = {
    "tags": ("tags", {}, {}),
    "boxes": ("boxes", {}, {}),
    "scribbles": ("scribbles", {"sparse_dir": "scribble/seginst"}, {"sparse_unlabeled_value": _K}),
    "scribbles_0.3": ("scribbles", {"sparse_dir": "scribble/seginst_0.3"}, {"sparse_unlabeled_value": _K}),
    "points": ("points", {"sparse_dir": "point/segcls"}, {"sparse_unlabeled_value": _K}),
    "points_json": ("points_json", {"point_files": ("points.json",)}, {}),
    "clicks": ("clicks", {"sparse_dir": "20clicks"}, {"sparse_unlabeled_value": _K}),
    "pseudo": ("pseudo", {"pseudo_dir": "pseudo_labels"}, {}),
}
MARKER = "wss_synthetic.json"
# fallback over-segmentations of every image (docs/datasets.md §3.6)
OVERSEG_DIR = "overseg_felzenszwalb"


def _rotated_grid(h, w, cx, cy, angle):
    """Pixel coordinates relative to (cx, cy), rotated by `angle` (radians)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    xs -= cx
    ys -= cy
    cos, sin = np.cos(angle), np.sin(angle)
    return xs * cos + ys * sin, -xs * sin + ys * cos


def _texture(kind, u, v, rng):
    """Boolean two-tone pattern over rotated coordinates (u, v)."""
    period = rng.uniform(5.0, 9.0)
    if kind == "stripes":
        return np.mod(u, period) < period / 2
    if kind == "dots":
        du = np.mod(u, period) - period / 2
        dv = np.mod(v, period) - period / 2
        return du * du + dv * dv < (0.32 * period) ** 2
    if kind == "checker":
        return (np.floor(u / period) + np.floor(v / period)) % 2 == 0
    raise ValueError(f"unknown texture {kind!r}")


def _shape_mask(kind, h, w, cx, cy, size, angle, rng):
    """uint8 mask of one object shape of radius ~`size` pixels."""
    mask = np.zeros((h, w), np.uint8)
    if kind == "disc":
        axes = (int(size), int(size * rng.uniform(0.75, 1.0)))
        cv2.ellipse(mask, (int(cx), int(cy)), axes, np.degrees(angle), 0, 360, 1, -1)
        return mask
    if kind == "square":
        aspect = rng.uniform(0.8, 1.0)
        corners = np.array([[-1, -aspect], [1, -aspect], [1, aspect], [-1, aspect]]) * 0.85
    elif kind == "triangle":
        t = np.array([-np.pi / 2, np.pi / 6, 5 * np.pi / 6])
        corners = np.stack([np.cos(t), np.sin(t)], axis=1) * 1.1
    elif kind == "cross":
        a, b = 1.0, 0.33
        corners = np.array(
            [[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b],
             [b, a], [-b, a], [-b, b], [-a, b], [-a, -b], [-b, -b]]
        )
    else:
        raise ValueError(f"unknown shape {kind!r}")
    cos, sin = np.cos(angle), np.sin(angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    points = corners @ rotation.T * size + np.array([cx, cy])
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask


def _random_colour(rng):
    return rng.uniform(0, 255, size=3).astype(np.float32)


def _shade_pair(rng):
    """Two tones of one random hue, far apart in brightness, so a texture is visible
    whatever the hue: colour alone never tells the class."""
    hue = rng.uniform(0.25, 1.0, size=3).astype(np.float32)
    hue /= hue.max()
    bright, dark = rng.uniform(170, 255), rng.uniform(20, 90)
    pair = [hue * bright, hue * dark]
    return pair if rng.random() < 0.5 else pair[::-1]


def _background(h, w, rng):
    # smooth colour field from a coarse random grid
    coarse = rng.uniform(20, 235, size=(4, 4, 3)).astype(np.float32)
    image = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    # clutter: flat or noisy blobs and polygons, and thin lines, none with a class texture
    for _ in range(rng.integers(3, 9)):
        mask = np.zeros((h, w), np.uint8)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        if rng.random() < 0.5:
            axes = (int(rng.uniform(4, 0.3 * w)), int(rng.uniform(4, 0.3 * h)))
            cv2.ellipse(mask, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, 1, -1)
        else:
            pts = np.stack([cx + rng.normal(0, 0.15 * w, 5), cy + rng.normal(0, 0.15 * h, 5)], 1)
            cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
        fill = _random_colour(rng)[None, None, :]
        if rng.random() < 0.5:
            noise = cv2.GaussianBlur(rng.normal(0, 40, size=(h, w, 3)).astype(np.float32), (0, 0), 2)
            fill = fill + noise
        image = np.where(mask[..., None] > 0, fill, image)
    for _ in range(rng.integers(2, 7)):
        p1 = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        p2 = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        cv2.line(image, p1, p2, _random_colour(rng).tolist(), int(rng.integers(1, 3)))
    return image


def _pick_classes(rng):
    count = rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25])
    classes = [int(rng.integers(1, len(SYNTHETIC_CLASSES)))]
    for _ in range(count - 1):
        if rng.random() < 0.5:
            classes.append(_PARTNER[classes[0]])
        else:
            classes.append(int(rng.integers(1, len(SYNTHETIC_CLASSES))))
    return classes


def render_synthetic_image(rng):
    """One (RGB uint8 image, uint8 label) pair drawn from `rng`."""
    h, w = (int(x) for x in rng.integers(96, 145, size=2))
    image = _background(h, w, rng)
    label = np.zeros((h, w), np.uint8)
    for cls in _pick_classes(rng):
        shape, texture = _CLASS_RECIPES[cls]
        size = rng.uniform(0.2, 0.4) * min(h, w)
        cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
        mask = _shape_mask(shape, h, w, cx, cy, size, rng.uniform(0, 2 * np.pi), rng) > 0
        u, v = _rotated_grid(h, w, cx, cy, rng.uniform(0, np.pi))
        first, second = _shade_pair(rng)
        pattern = _texture(texture, u, v, rng)[..., None]
        # a linear shading gradient across the object
        shade = 1.0 + 0.2 * (u / max(size, 1.0)).clip(-1, 1)[..., None]
        fill = np.where(pattern, first, second) * shade
        image = np.where(mask[..., None], fill, image)
        label[mask] = cls
    image += rng.normal(0, rng.uniform(4, 10), size=image.shape).astype(np.float32)
    # VOC-style void band: pixels with a 4-neighbour of another label are ignored
    boundary = np.zeros_like(label, dtype=bool)
    boundary[:, 1:] |= label[:, 1:] != label[:, :-1]
    boundary[:, :-1] |= label[:, 1:] != label[:, :-1]
    boundary[1:, :] |= label[1:, :] != label[:-1, :]
    boundary[:-1, :] |= label[1:, :] != label[:-1, :]
    label[boundary] = IGNORE_LABEL
    return np.clip(image, 0, 255).astype(np.uint8), label


def generate_synthetic_dataset(dataset_dir, seed=DEFAULT_SEED, split_sizes=None):
    """
    Write the dataset into `dataset_dir` (created). Deterministic: the same seed and sizes
    give identical files; each image draws from its own seeded stream.
    """
    split_sizes = dict(split_sizes or SPLIT_SIZES)
    for sub in ("JPEGImages", "SegmentationClass", os.path.join("ImageSets", "Segmentation")):
        os.makedirs(os.path.join(dataset_dir, sub), exist_ok=True)
    palette = voc_palette()
    index = 0
    for split, count in split_sizes.items():
        ids = []
        for _ in range(count):
            image_id = f"syn_{index:06d}"
            image, label = render_synthetic_image(np.random.default_rng([seed, index]))
            Image.fromarray(image).save(
                os.path.join(dataset_dir, "JPEGImages", image_id + ".jpg"), quality=90
            )
            label_png = Image.fromarray(label, mode="P")
            label_png.putpalette(palette)
            label_png.save(os.path.join(dataset_dir, "SegmentationClass", image_id + ".png"))
            ids.append(image_id)
            index += 1
        with open(os.path.join(dataset_dir, "ImageSets", "Segmentation", split + ".txt"), "w") as f:
            f.write("\n".join(ids) + "\n")
    records = [
        {"image_id": i, "sem_seg_file_name": os.path.join(dataset_dir, "SegmentationClass", i + ".png")}
        for i in (f"syn_{n:06d}" for n in range(index))
    ]
    write_weak_labels(
        records, dataset_dir, kinds=SIMULATED_KINDS,
        num_classes=len(SYNTHETIC_CLASSES), class_names=SYNTHETIC_CLASSES, ignore_label=IGNORE_LABEL,
        seed=seed, **SIMULATED_WEAK_LABELS,
    )
    info = {
        "version": GENERATOR_VERSION,
        "seed": seed,
        "splits": split_sizes,
        "classes": list(SYNTHETIC_CLASSES),
    }
    with open(os.path.join(dataset_dir, MARKER), "w") as f:
        json.dump(info, f, indent=2)
    return info


def _is_complete(dataset_dir, seed):
    try:
        with open(os.path.join(dataset_dir, MARKER)) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return False
    return info.get("version") == GENERATOR_VERSION and info.get("seed") == seed


def ensure_synthetic_dataset(root=None, seed=DEFAULT_SEED):
    """
    Return the dataset folder, generating it first if missing or stale. Generation goes to
    a temporary sibling folder that is renamed into place, so concurrent processes (one per
    GPU) and interrupted runs never leave a half-written dataset behind.
    """
    root = root or get_datasets_root()
    dataset_dir = os.path.join(root, DIRNAME)
    if _is_complete(dataset_dir, seed):
        return dataset_dir
    os.makedirs(root, exist_ok=True)
    logger.info(f"Generating the synthetic dataset into {dataset_dir} (seed {seed}) ...")
    tmp_dir = tempfile.mkdtemp(prefix=DIRNAME + ".tmp", dir=root)
    try:
        generate_synthetic_dataset(tmp_dir, seed=seed)
        if os.path.isdir(dataset_dir) and not _is_complete(dataset_dir, seed):
            shutil.rmtree(dataset_dir, ignore_errors=True)  # stale version or seed
        try:
            os.rename(tmp_dir, dataset_dir)
        except OSError:
            if not _is_complete(dataset_dir, seed):  # not another process that won the race
                raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return dataset_dir


def _overseg_complete(folder):
    try:
        with open(os.path.join(folder, "overseg.json")) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return False
    return info.get("parameters") == {k: type(v)(v) for k, v in OVERSEG_PARAMETERS.items()}


def ensure_synthetic_overseg(dataset_dir=None):
    """
    The synthetic dataset folder, with its fallback over-segmentations (OVERSEG_DIR) written
    first if missing or made with other parameters; written to a temporary folder renamed
    into place, like the dataset itself.
    """
    dataset_dir = dataset_dir or ensure_synthetic_dataset()
    folder = os.path.join(dataset_dir, OVERSEG_DIR)
    if _overseg_complete(folder):
        return dataset_dir
    logger.info(f"Writing the fallback over-segmentations of the synthetic dataset into {folder} ...")
    records = []
    for split in SPLIT_SIZES:
        with open(os.path.join(dataset_dir, "ImageSets", "Segmentation", split + ".txt")) as f:
            records += [{"image_id": i, "file_name": os.path.join(dataset_dir, "JPEGImages", i + ".jpg")}
                        for i in f.read().split()]
    tmp_dir = tempfile.mkdtemp(prefix=OVERSEG_DIR + ".tmp", dir=dataset_dir)
    try:
        write_oversegmentations(records, tmp_dir, **OVERSEG_PARAMETERS)
        if os.path.isdir(folder) and not _overseg_complete(folder):
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.rename(tmp_dir, folder)
        except OSError:
            if not _overseg_complete(folder):
                raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return dataset_dir


def load_synthetic_sem_seg(split):
    return load_voc_sem_seg(ensure_synthetic_dataset(), split)


def register_synthetic():
    for split in SPLIT_SIZES:
        register_sem_seg_dataset(
            f"wss_synthetic_{split}",
            lambda split=split: load_synthetic_sem_seg(split),
            SYNTHETIC_CLASSES,
            voc_colors(len(SYNTHETIC_CLASSES)),
            IGNORE_LABEL,
        )
    colors = voc_colors(len(SYNTHETIC_CLASSES))
    register_voc_weak_labels("wss_synthetic_train", ensure_synthetic_overseg, "train", SYNTHETIC_CLASSES, colors,
                             SYNTHETIC_WEAK_LABELS, overseg_dir=OVERSEG_DIR)
    base = tuple(c for c in range(len(SYNTHETIC_CLASSES)) if c not in NOVEL_CLASSES)
    split_meta = {"base_classes": base, "novel_classes": NOVEL_CLASSES, "c_base_dids": base, "c_novel_dids": NOVEL_CLASSES}
    register_voc_weak_labels("wss_synthetic_train", ensure_synthetic_dataset, "train", SYNTHETIC_CLASSES, colors,
                             {"ws": ("weak_shot", {"sem_seg_dir": "SegmentationClass"}, split_meta)})
    register_sem_seg_dataset("wss_synthetic_val_ws", lambda: load_synthetic_sem_seg("val"), SYNTHETIC_CLASSES,
                             colors, IGNORE_LABEL, **split_meta)


register_synthetic()
