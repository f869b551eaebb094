"""
ADE20K SceneParsing (ADEChallengeData2016) weak-shot splits of SimFormer
(docs/datasets.md §6, §7.3): 150 classes, labels after detectron2's −1 shift
(0..149, 255 = other/unlabeled).

Layout under `<datasets root>/ADEChallengeData2016/` (detectron2's, preferred):
    images/{training,validation}/<stem>.jpg
    annotations_detectron2/{training,validation}/<stem>.png
or SimFormer's repackaging:
    images_detectron2/{train,test}/<stem>.jpg
    annotations_detectron2/{train,test}/<stem>.png

Registered names (under the wss_d2 datasets root, like every wss_d2 set; detectron2's own
full-label `ade20k_sem_seg_{train,val}` read only $DETECTRON2_DATASETS and stay as they are):
    ade20k_wss_sem_seg_{train,val}  full labels, every image (all-void ones are skipped by the
                                  training mapper)
    ade20k_train_ws_split{1..4}   weak_label "weak_shot": dicts keep the GT, the mapper derives
                                  base pixels and novel tags; SimFormer's 16 all-void images
                                  are skipped
    ade20k_val_ws_split{1..4}     evaluation sets (full labels) with the split's base/novel metadata
"""
import os

from .loading import load_paired_sem_seg, require_dataset_dir
from .paths import get_datasets_root
from .pascal_voc import voc_colors
from .registration import (
    IGNORE_LABEL,
    record_dataset_roots,
    register_sem_seg_dataset,
    register_weak_shot_dataset,
)

try:  # detectron2's list, verbatim ("window " with its trailing space)
    from detectron2.data.datasets.builtin_meta import ADE20K_SEM_SEG_CATEGORIES as _D2_ADE20K
except ImportError:  # pragma: no cover - every detectron2 >= 0.3 has it
    _D2_ADE20K = None

# docs/datasets.md Appendix D, for a detectron2 without the list
_ADE20K_FALLBACK = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road, route", "bed", "window ",
    "grass", "cabinet", "sidewalk, pavement", "person", "earth, ground", "door", "table",
    "mountain, mount", "plant", "curtain", "chair", "car", "water", "painting, picture", "sofa",
    "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock, stone", "wardrobe, closet, press", "lamp", "tub", "rail", "cushion",
    "base, pedestal, stand", "box", "column, pillar", "signboard, sign",
    "chest of drawers, chest, bureau, dresser", "counter", "sand", "sink", "skyscraper",
    "fireplace", "refrigerator, icebox", "grandstand, covered stand", "path", "stairs", "runway",
    "case, display case, showcase, vitrine", "pool table, billiard table, snooker table", "pillow",
    "screen door, screen", "stairway, staircase", "river", "bridge, span", "bookcase",
    "blind, screen", "coffee table", "toilet, can, commode, crapper, pot, potty, stool, throne",
    "flower", "book", "hill", "bench", "countertop", "stove", "palm, palm tree", "kitchen island",
    "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel, hut, hutch, shack, shanty",
    "bus", "towel", "light", "truck", "tower", "chandelier", "awning, sunshade, sunblind",
    "street lamp", "booth", "tv", "plane", "dirt track", "clothes", "pole", "land, ground, soil",
    "bannister, banister, balustrade, balusters, handrail",
    "escalator, moving staircase, moving stairway", "ottoman, pouf, pouffe, puff, hassock",
    "bottle", "buffet, counter, sideboard", "poster, posting, placard, notice, bill, card", "stage",
    "van", "ship", "fountain", "conveyer belt, conveyor belt, conveyer, conveyor, transporter",
    "canopy", "washer, automatic washer, washing machine", "plaything, toy", "pool", "stool",
    "barrel, cask", "basket, handbasket", "falls", "tent", "bag", "minibike, motorbike", "cradle",
    "oven", "ball", "food, solid food", "step, stair", "tank, storage tank", "trade name",
    "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket, cover",
    "sculpture", "hood, exhaust hood", "sconce", "vase", "traffic light", "tray", "trash can",
    "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
    "glass, drinking glass", "clock", "flag",
)
ADE20K_CLASSES = tuple(_D2_ADE20K) if _D2_ADE20K is not None else _ADE20K_FALLBACK
ADE20K_COLORS = voc_colors(len(ADE20K_CLASSES))

# SimFormer's novel label values, 38 = round(150 / 4) per split (docs/datasets.md §7.3)
ADE20K_NOVEL_SPLITS = {
    1: (
        1, 3, 6, 8, 10, 13, 17, 22, 23, 29, 33, 38, 41, 50, 51, 56, 67, 70, 71, 74, 77, 81, 92, 93, 98,
        101, 102, 103, 110, 113, 119, 121, 126, 127, 130, 136, 147, 149,
    ),
    2: (
        0, 10, 21, 27, 28, 29, 34, 40, 42, 43, 51, 57, 58, 65, 66, 68, 69, 73, 76, 78, 85, 88, 90, 100,
        105, 110, 111, 112, 113, 114, 117, 123, 124, 132, 134, 139, 142, 146,
    ),
    3: (
        0, 5, 9, 15, 16, 21, 24, 25, 27, 32, 34, 35, 38, 39, 55, 70, 76, 85, 95, 96, 98, 100, 106, 109,
        111, 118, 119, 124, 128, 132, 134, 135, 136, 138, 140, 141, 143, 144,
    ),
    4: (
        5, 11, 13, 16, 21, 24, 26, 32, 35, 42, 53, 56, 60, 61, 63, 64, 68, 70, 75, 82, 91, 93, 94, 99,
        100, 105, 111, 115, 118, 121, 122, 130, 132, 135, 137, 138, 141, 143,
    ),
}
# training images whose labels are all ignore; SimFormer's loader skips them (docs/datasets.md §7.1)
ADE20K_SKIPPED_IMAGES = frozenset(
    f"ADE_train_{n:08d}"
    for n in (5149, 5150, 5152, 5333, 5905, 6510, 13298, 14634, 14636, 14884, 15320, 15330, 15928,
              19743, 19385, 19873)
)
# split -> (detectron2 folder name, SimFormer folder name)
_ADE20K_SPLIT_DIRS = {"train": ("training", "train"), "val": ("validation", "test")}
ADE20K_DATASET_NAMES = tuple(f"ade20k_wss_sem_seg_{s}" for s in _ADE20K_SPLIT_DIRS) + tuple(
    f"ade20k_{s}_ws_split{k}" for s in _ADE20K_SPLIT_DIRS for k in ADE20K_NOVEL_SPLITS
)


def find_ade20k_dirs(split, datasets_root=None):
    """
    {image_root, sem_seg_root} of `split` ("train" or "val"): detectron2's
    images/<training|validation> + annotations_detectron2/<same>, else SimFormer's
    images_detectron2/<train|test> + annotations_detectron2/<same>.
    """
    root = os.path.join(datasets_root or get_datasets_root(), "ADEChallengeData2016")
    require_dataset_dir(root, "ADE20K")
    d2_dir, simformer_dir = _ADE20K_SPLIT_DIRS[split]
    layouts = [
        (os.path.join(root, "images", d2_dir), os.path.join(root, "annotations_detectron2", d2_dir)),
        (
            os.path.join(root, "images_detectron2", simformer_dir),
            os.path.join(root, "annotations_detectron2", simformer_dir),
        ),
    ]
    for image_root, sem_seg_root in layouts:
        if os.path.isdir(image_root):
            return {"image_root": image_root, "sem_seg_root": sem_seg_root}
    raise FileNotFoundError(
        f"ADE20K {split} images not found: neither {layouts[0][0]} (detectron2 layout) nor "
        f"{layouts[1][0]} (SimFormer layout) exists"
    )


def load_ade20k(split, datasets_root=None):
    """(dicts, {image_root, sem_seg_root}) of `split`; labels must be the shifted ones."""
    roots = find_ade20k_dirs(split, datasets_root)
    return load_paired_sem_seg(roots["image_root"], roots["sem_seg_root"]), roots


def register_ade20k_sem_seg():
    """The full-label sets, so that a wss_d2 config never mixes roots (module docstring)."""
    for split in _ADE20K_SPLIT_DIRS:
        name = f"ade20k_wss_sem_seg_{split}"

        def loader(name=name, split=split):
            dicts, roots = load_ade20k(split)
            record_dataset_roots(name, **roots)
            return dicts

        register_sem_seg_dataset(name, loader, ADE20K_CLASSES, ADE20K_COLORS, IGNORE_LABEL, background_class=None)


def register_ade20k_weak_shot():
    for split in _ADE20K_SPLIT_DIRS:
        for k, novel in ADE20K_NOVEL_SPLITS.items():
            register_weak_shot_dataset(
                f"ade20k_{split}_ws_split{k}",
                lambda split=split: load_ade20k(split),
                ADE20K_CLASSES,
                ADE20K_COLORS,
                novel,
                is_train=split == "train",
                skipped_ids=ADE20K_SKIPPED_IMAGES,
            )


register_ade20k_sem_seg()
register_ade20k_weak_shot()
