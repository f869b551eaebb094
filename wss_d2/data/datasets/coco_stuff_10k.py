"""
COCO-Stuff-10K (v1.0) in MaskFormer's layout (docs/datasets.md §5): 171 contiguous
classes (0..79 things, 80..170 stuff), 255 = unlabeled; and SimFormer's weak-shot base/novel
splits of it (docs/datasets.md §7).

Layout under `<datasets root>/coco/coco_stuff_10k/` (MaskFormer's prepare script writes it):
    images_detectron2/{train,test}/<stem>.jpg          9,000 / 1,000
    annotations_detectron2/{train,test}/<stem>.png     grayscale, 0..170 and 255

Registered names (MaskFormer owns `coco_2017_{train,test}_stuff_10k_sem_seg`):
    coco_stuff_10k_{train,test}_sem_seg       full labels
    coco_stuff_10k_train_ws_split{1..9}       weak_label "weak_shot": the dicts keep the GT and
                                              the mapper derives base pixels and novel tags
    coco_stuff_10k_test_ws_split{1..9}        evaluation sets (full labels) with the split's
                                              base/novel metadata, for base/novel mIoU
"""
import os

from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

from .loading import load_paired_sem_seg, require_dataset_dir
from .paths import get_datasets_root
from .pascal_voc import voc_colors
from .registration import (
    IGNORE_LABEL,
    record_dataset_roots,
    register_sem_seg_dataset,
    register_weak_shot_dataset,
)

# (COCO category id, name) of the contiguous label values 0..170 (docs/datasets.md Appendix C)
COCO_STUFF_CATEGORIES = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"),
    (7, "train"), (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"),
    (13, "stop sign"), (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"),
    (18, "dog"), (19, "horse"), (20, "sheep"), (21, "cow"), (22, "elephant"), (23, "bear"),
    (24, "zebra"), (25, "giraffe"), (27, "backpack"), (28, "umbrella"), (31, "handbag"),
    (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"), (36, "snowboard"),
    (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"),
    (46, "wine glass"), (47, "cup"), (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"),
    (52, "banana"), (53, "apple"), (54, "sandwich"), (55, "orange"), (56, "broccoli"),
    (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"), (62, "chair"),
    (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"), (70, "toilet"),
    (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"),
    (77, "cell phone"), (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"),
    (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"), (87, "scissors"),
    (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"), (92, "banner"), (93, "blanket"),
    (94, "branch"), (95, "bridge"), (96, "building-other"), (97, "bush"), (98, "cabinet"),
    (99, "cage"), (100, "cardboard"), (101, "carpet"), (102, "ceiling-other"),
    (103, "ceiling-tile"), (104, "cloth"), (105, "clothes"), (106, "clouds"), (107, "counter"),
    (108, "cupboard"), (109, "curtain"), (110, "desk-stuff"), (111, "dirt"), (112, "door-stuff"),
    (113, "fence"), (114, "floor-marble"), (115, "floor-other"), (116, "floor-stone"),
    (117, "floor-tile"), (118, "floor-wood"), (119, "flower"), (120, "fog"), (121, "food-other"),
    (122, "fruit"), (123, "furniture-other"), (124, "grass"), (125, "gravel"),
    (126, "ground-other"), (127, "hill"), (128, "house"), (129, "leaves"), (130, "light"),
    (131, "mat"), (132, "metal"), (133, "mirror-stuff"), (134, "moss"), (135, "mountain"),
    (136, "mud"), (137, "napkin"), (138, "net"), (139, "paper"), (140, "pavement"),
    (141, "pillow"), (142, "plant-other"), (143, "plastic"), (144, "platform"),
    (145, "playingfield"), (146, "railing"), (147, "railroad"), (148, "river"), (149, "road"),
    (150, "rock"), (151, "roof"), (152, "rug"), (153, "salad"), (154, "sand"), (155, "sea"),
    (156, "shelf"), (157, "sky-other"), (158, "skyscraper"), (159, "snow"), (160, "solid-other"),
    (161, "stairs"), (162, "stone"), (163, "straw"), (164, "structural-other"), (165, "table"),
    (166, "tent"), (167, "textile-other"), (168, "towel"), (169, "tree"), (170, "vegetable"),
    (171, "wall-brick"), (172, "wall-concrete"), (173, "wall-other"), (174, "wall-panel"),
    (175, "wall-stone"), (176, "wall-tile"), (177, "wall-wood"), (178, "water-other"),
    (179, "waterdrops"), (180, "window-blind"), (181, "window-other"), (182, "wood"),
)
COCO_STUFF_CLASSES = tuple(name for _, name in COCO_STUFF_CATEGORIES)
# detectron2's colours for the 80 things, VOC-palette colours (disjoint from them) for stuff
COCO_STUFF_COLORS = [list(c["color"]) for c in COCO_CATEGORIES if c["isthing"] == 1] + voc_colors(171)[80:]
COCO_STUFF_ID_TO_CONTIGUOUS = {coco_id: index for index, (coco_id, _) in enumerate(COCO_STUFF_CATEGORIES)}

# SimFormer's novel label values (docs/datasets.md §7.2)
_NOVEL_SPLITS_1_TO_3 = (
    (
        3, 6, 10, 11, 18, 19, 26, 27, 31, 34, 37, 38, 40, 41, 50, 53, 55, 59, 61, 68, 76, 82, 85, 90,
        92, 94, 103, 106, 108, 112, 113, 117, 120, 127, 129, 131, 141, 146, 155, 156, 159, 166, 169,
    ),
    (
        1, 3, 6, 7, 9, 10, 13, 27, 31, 35, 38, 40, 43, 44, 53, 62, 68, 74, 77, 80, 82, 84, 86, 99, 101,
        108, 110, 111, 116, 118, 121, 122, 125, 131, 137, 141, 148, 153, 155, 156, 160, 161, 166,
    ),
    (
        0, 5, 10, 13, 15, 16, 20, 23, 25, 27, 28, 31, 33, 34, 35, 36, 40, 43, 47, 50, 51, 58, 62, 69,
        80, 81, 83, 84, 87, 90, 101, 105, 119, 121, 124, 126, 137, 138, 150, 154, 157, 158, 164,
    ),
)
# fixed permutation; splits 4..9 take prefixes of it
_RANDP = (
    170, 112, 3, 26, 121, 69, 50, 87, 14, 13, 58, 106, 17, 134, 164, 161, 100, 151, 24, 114, 25,
    92, 12, 61, 102, 113, 89, 110, 76, 128, 149, 57, 144, 137, 46, 27, 83, 133, 162, 37, 109, 33,
    40, 82, 47, 0, 31, 111, 66, 91, 120, 136, 39, 157, 163, 45, 28, 131, 9, 49, 19, 155, 150, 1, 4,
    68, 130, 42, 132, 75, 71, 48, 7, 85, 116, 96, 93, 159, 139, 115, 95, 105, 78, 156, 54, 5, 11,
    44, 65, 88, 62, 60, 41, 104, 107, 8, 168, 117, 98, 143,
)
_PREFIX_LENGTHS = (round(171 / 4),) + tuple(int(171 * r) for r in (0.30, 0.35, 0.40, 0.45, 0.50))
COCO_STUFF_NOVEL_SPLITS = {
    k: tuple(sorted(ids))
    for k, ids in enumerate(_NOVEL_SPLITS_1_TO_3 + tuple(_RANDP[:n] for n in _PREFIX_LENGTHS), start=1)
}
# skipped by SimFormer's COCO-Stuff loader (docs/datasets.md §7.1)
COCO_STUFF_SKIPPED_IMAGES = frozenset(
    "COCO_train2014_" + number
    for number in ("000000016680", "000000230639", "000000382127", "000000429995",
                   "000000314646", "000000003518", "000000058075")
)
COCO_STUFF_SPLITS = ("train", "test")
COCO_STUFF_DATASET_NAMES = tuple(f"coco_stuff_10k_{s}_sem_seg" for s in COCO_STUFF_SPLITS) + tuple(
    f"coco_stuff_10k_{s}_ws_split{k}" for s in COCO_STUFF_SPLITS for k in COCO_STUFF_NOVEL_SPLITS
)


def find_coco_stuff_10k_root(datasets_root=None):
    root = os.path.join(datasets_root or get_datasets_root(), "coco", "coco_stuff_10k")
    return require_dataset_dir(root, "COCO-Stuff-10K")


def load_coco_stuff_10k(split, root=None):
    """(dicts, {image_root, sem_seg_root}) of `split` ("train" or "test")."""
    if split not in COCO_STUFF_SPLITS:
        raise ValueError(f"Unknown COCO-Stuff-10K split {split!r}; expected one of {COCO_STUFF_SPLITS}")
    root = root or find_coco_stuff_10k_root()
    roots = {
        "image_root": os.path.join(root, "images_detectron2", split),
        "sem_seg_root": os.path.join(root, "annotations_detectron2", split),
    }
    return load_paired_sem_seg(roots["image_root"], roots["sem_seg_root"]), roots


def _register_full(name, split):
    def loader():
        dicts, roots = load_coco_stuff_10k(split)
        record_dataset_roots(name, **roots)
        return dicts

    register_sem_seg_dataset(
        name,
        loader,
        COCO_STUFF_CLASSES,
        COCO_STUFF_COLORS,
        IGNORE_LABEL,
        background_class=None,
        stuff_dataset_id_to_contiguous_id=COCO_STUFF_ID_TO_CONTIGUOUS,
    )


def register_coco_stuff_10k():
    for split in COCO_STUFF_SPLITS:
        _register_full(f"coco_stuff_10k_{split}_sem_seg", split)
        for k, novel in COCO_STUFF_NOVEL_SPLITS.items():
            register_weak_shot_dataset(
                f"coco_stuff_10k_{split}_ws_split{k}",
                lambda split=split: load_coco_stuff_10k(split),
                COCO_STUFF_CLASSES,
                COCO_STUFF_COLORS,
                novel,
                is_train=split == "train",
                skipped_ids=COCO_STUFF_SKIPPED_IMAGES,
                stuff_dataset_id_to_contiguous_id=COCO_STUFF_ID_TO_CONTIGUOUS,
            )


register_coco_stuff_10k()
