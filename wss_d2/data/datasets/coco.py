"""
MS COCO 2014 in PASCAL-VOC style (docs/datasets.md §4): 81 classes, 0 = background,
1..80 = the COCO thing classes in category-id order (detectron2's `thing_classes`), label
PNGs as written by MCC's `parse_coco.py` (grayscale, one per image).

Layout under `<datasets root>/coco/`:
    train2014/<stem>.jpg, val2014/<stem>.jpg        (or MCC's JPEGImages/{train2014,val2014}/)
    SegmentationClass/{train2014,val2014}/<stem>.png
    ImageSets/{train,val}.txt                       one stem per line (any read_split_ids style)
    cls_labels_coco.npy                             image tags, 80-dim multi-hot, str keys
    pseudo_labels/<stem>.png                        pseudo labels (any folder, see below)

Registered names (detectron2's `coco_2014_*` names are instance sets and stay theirs):
    coco_2014_{train,val}_voc_sem_seg   full labels
    coco_2014_val_part_voc_sem_seg      the first 5,000 images of the val list (MCC's training-time val)
    coco_2014_train_voc_tags            image_labels from cls_labels_coco.npy, no label maps
    coco_2014_train_voc_pseudo          pseudo_sem_seg_file_name from coco/pseudo_labels/
`register_coco_voc_pseudo` registers pseudo labels from another folder under another name.
"""
import os

from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

from ..weak_labels import load_image_tags
from .paths import get_datasets_root
from .loading import read_split_ids, require_dataset_dir, require_files
from .registration import IGNORE_LABEL, record_dataset_roots, register_sem_seg_dataset

_COCO_THINGS = [c for c in COCO_CATEGORIES if c["isthing"] == 1]
COCO_VOC_CLASSES = ("background",) + tuple(c["name"] for c in _COCO_THINGS)
COCO_VOC_COLORS = [[0, 0, 0]] + [list(c["color"]) for c in _COCO_THINGS]
COCO_VOC_SPLITS = {"train": "train2014", "val": "val2014"}
DEFAULT_TAG_FILE = "cls_labels_coco.npy"
DEFAULT_PSEUDO_DIR = "pseudo_labels"
VAL_PART_SIZE = 5000  # MCC / ToCo's val_part: the first 5,000 names of the val list
COCO_VOC_DATASET_NAMES = (
    "coco_2014_train_voc_sem_seg",
    "coco_2014_val_voc_sem_seg",
    "coco_2014_val_part_voc_sem_seg",
    "coco_2014_train_voc_tags",
    "coco_2014_train_voc_pseudo",
)


def find_coco_root(datasets_root=None):
    return require_dataset_dir(os.path.join(datasets_root or get_datasets_root(), "coco"), "COCO 2014")


def find_coco_image_dir(coco_root, split):
    """<coco>/train2014 (detectron2's place), else <coco>/JPEGImages/train2014 (MCC's)."""
    year_split = COCO_VOC_SPLITS[split]
    candidates = [os.path.join(coco_root, year_split), os.path.join(coco_root, "JPEGImages", year_split)]
    for candidate in candidates:
        if os.path.isdir(candidate):
            return candidate
    raise FileNotFoundError(
        f"COCO {year_split} images not found: neither {candidates[0]} nor {candidates[1]} exists"
    )


def _split_list(coco_root, split):
    if split not in COCO_VOC_SPLITS:
        raise ValueError(f"Unknown COCO split {split!r}; expected one of {tuple(COCO_VOC_SPLITS)}")
    return os.path.join(coco_root, "ImageSets", split + ".txt")


def _coco_image_dicts(coco_root, split):
    """file_name and image_id of every listed image (each must exist)."""
    list_file = _split_list(coco_root, split)
    ids = read_split_ids(list_file)
    image_dir = find_coco_image_dir(coco_root, split)
    images = [os.path.join(image_dir, i + ".jpg") for i in ids]
    require_files(images, "images", list_file)
    return [{"file_name": image, "image_id": image_id} for image_id, image in zip(ids, images)], list_file


def load_coco_voc_sem_seg(coco_root, split):
    """Dicts (file_name, image_id, sem_seg_file_name) of `split` ("train" or "val")."""
    dicts, list_file = _coco_image_dicts(coco_root, split)
    label_dir = os.path.join(coco_root, "SegmentationClass", COCO_VOC_SPLITS[split])
    for d in dicts:
        d["sem_seg_file_name"] = os.path.join(label_dir, d["image_id"] + ".png")
    require_files([d["sem_seg_file_name"] for d in dicts], "label maps", list_file)
    return dicts


def load_coco_voc_tags(coco_root, split="train", tag_file=DEFAULT_TAG_FILE):
    """
    Dicts (file_name, image_id, image_labels) of `split`; image_labels are the label values
    1..80 of the image's tags in `tag_file` (relative to `coco_root`, or absolute). Every
    listed image needs an entry.
    """
    dicts, list_file = _coco_image_dicts(coco_root, split)
    tag_file = os.path.join(coco_root, tag_file)
    try:
        tags = load_image_tags(tag_file, len(COCO_VOC_CLASSES) - 1)
    except ValueError as e:
        if tag_file in str(e):
            raise
        raise ValueError(f"Image-tag file {tag_file}: {e}") from e
    for d in dicts:  # some repositories key COCO tags by the integer image id
        if d["image_id"] not in tags and d["image_id"][-12:].isdigit():
            by_number = tags.get(str(int(d["image_id"][-12:])))
            if by_number is not None:
                tags[d["image_id"]] = by_number
    missing = [d["image_id"] for d in dicts if d["image_id"] not in tags]
    if missing:
        raise KeyError(
            f"Image-tag file {tag_file} has no entry for {len(missing)} images listed in "
            f"{list_file}, e.g. {missing[:5]}"
        )
    for d in dicts:
        d["image_labels"] = list(tags[d["image_id"]])
    return dicts


def load_coco_voc_pseudo(coco_root, split="train", pseudo_dir=DEFAULT_PSEUDO_DIR):
    """Dicts (file_name, image_id, pseudo_sem_seg_file_name) with pseudo labels
    `<pseudo_dir>/<stem>.png`; `pseudo_dir` is relative to `coco_root`, or absolute."""
    dicts, list_file = _coco_image_dicts(coco_root, split)
    pseudo_dir = os.path.join(coco_root, pseudo_dir)
    require_dataset_dir(pseudo_dir, "COCO pseudo-label folder")
    for d in dicts:
        d["pseudo_sem_seg_file_name"] = os.path.join(pseudo_dir, d["image_id"] + ".png")
    require_files([d["pseudo_sem_seg_file_name"] for d in dicts], "pseudo labels", list_file)
    return dicts


def _register(name, load, weak_label, **roots):
    """Register `load(coco_root)`; the roots (functions of coco_root) go to the metadata on load."""

    def loader():
        coco_root = find_coco_root()
        dicts = load(coco_root)
        record_dataset_roots(name, **{key: root(coco_root) for key, root in roots.items()})
        return dicts

    register_sem_seg_dataset(
        name,
        loader,
        COCO_VOC_CLASSES,
        COCO_VOC_COLORS,
        IGNORE_LABEL,
        background_class=0,
        weak_label=weak_label,
    )


def register_coco_voc_pseudo(
    name="coco_2014_train_voc_pseudo", pseudo_dir=DEFAULT_PSEUDO_DIR, split="train"
):
    """Register COCO pseudo labels from `pseudo_dir` (relative to <root>/coco, or absolute)."""
    _register(
        name,
        lambda coco_root: load_coco_voc_pseudo(coco_root, split, pseudo_dir),
        "pseudo",
        image_root=lambda coco_root: find_coco_image_dir(coco_root, split),
        pseudo_sem_seg_root=lambda coco_root: os.path.join(coco_root, pseudo_dir),
    )


def register_coco_voc():
    for split, year_split in COCO_VOC_SPLITS.items():
        _register(
            f"coco_2014_{split}_voc_sem_seg",
            lambda coco_root, split=split: load_coco_voc_sem_seg(coco_root, split),
            "full",
            image_root=lambda coco_root, split=split: find_coco_image_dir(coco_root, split),
            sem_seg_root=lambda coco_root, year_split=year_split: os.path.join(
                coco_root, "SegmentationClass", year_split
            ),
        )
    _register(
        "coco_2014_val_part_voc_sem_seg",
        lambda coco_root: load_coco_voc_sem_seg(coco_root, "val")[:VAL_PART_SIZE],
        "full",
        image_root=lambda coco_root: find_coco_image_dir(coco_root, "val"),
        sem_seg_root=lambda coco_root: os.path.join(coco_root, "SegmentationClass", "val2014"),
    )
    _register(
        "coco_2014_train_voc_tags",
        lambda coco_root: load_coco_voc_tags(coco_root, "train"),
        "tags",
        image_root=lambda coco_root: find_coco_image_dir(coco_root, "train"),
        image_tags_file=lambda coco_root: os.path.join(coco_root, DEFAULT_TAG_FILE),
    )
    register_coco_voc_pseudo()


register_coco_voc()
