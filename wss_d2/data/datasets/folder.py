"""
A dataset of your own, registered from the config (docs/custom_dataset.md): a folder in the VOC layout
that `datasets/make_weak_labels.py` also writes,

    <ROOT>/JPEGImages/<id>.jpg
    <ROOT>/SegmentationClass/<id>.png            full masks: class ids 0..K-1, 255 = ignore
    <ROOT>/ImageSets/Segmentation/<split>.txt    one id per line
    and, for the weak-label split, any of: cls_labels.npy (tags), Annotations/<id>.xml (boxes),
    scribble/seginst/<id>.png, point/segcls/<id>.png, <N>clicks/<id>.png (sparse, K = unlabelled),
    points.json, overseg_felzenszwalb/<id>.png, pseudo_labels/<id>.png

with DATASETS.FOLDER.{ROOT, PREFIX, CLASSES, COLORS, SPLITS, WEAK_SPLIT}. Registered names:
    <PREFIX>_<split>_sem_seg          for each of SPLITS (full masks)
    <PREFIX>_<WEAK_SPLIT>_<kind>      tags, boxes, scribbles, points, points_json, clicks, pseudo
Weak-label files are read when a set is used, so only the kinds present need to exist.
"""
import os

from detectron2.data import DatasetCatalog, MetadataCatalog

from .pascal_voc import load_voc_sem_seg, register_voc_weak_labels, voc_colors
from .registration import IGNORE_LABEL, register_sem_seg_dataset

__all__ = ["folder_weak_labels", "register_folder_dataset", "register_folder_dataset_from_config"]

OVERSEG_DIR = "overseg_felzenszwalb"  # datasets/make_weak_labels.py --kinds overseg


def folder_weak_labels(num_classes, clicks=20):
    """The weak-label sets of a folder dataset (suffix: (kind, loader arguments, metadata)), as written by
    datasets/make_weak_labels.py (sparse PNGs hold K = num_classes on unlabelled pixels)."""
    sparse = {"sparse_unlabeled_value": num_classes}
    return {
        "tags": ("tags", {}, {}),
        "boxes": ("boxes", {}, {}),
        "scribbles": ("scribbles", {"sparse_dir": "scribble/seginst"}, sparse),
        "points": ("points", {"sparse_dir": "point/segcls"}, sparse),
        "points_json": ("points_json", {"point_files": ("points.json",)}, {}),
        "clicks": ("clicks", {"sparse_dir": f"{clicks}clicks"}, sparse),
        "pseudo": ("pseudo", {"pseudo_dir": "pseudo_labels"}, {}),
    }


def register_folder_dataset(prefix, root, class_names, colors=None, splits=("train", "val"), weak_split="train"):
    """Register the sets of the folder `root` (see the module docstring); idempotent for the same root."""
    root = os.path.abspath(os.path.expanduser(root))
    class_names = list(class_names)
    if len(class_names) < 2:
        raise ValueError(f"DATASETS.FOLDER.CLASSES needs the background and at least one class, got {class_names}")
    colors = [list(map(int, c)) for c in colors] if colors else voc_colors(len(class_names))
    if len(colors) != len(class_names) or any(len(c) != 3 for c in colors):
        raise ValueError(
            f"DATASETS.FOLDER.COLORS needs one [R, G, B] per class ({len(class_names)}), got {len(colors)} entries"
        )
    first = f"{prefix}_{splits[0]}_sem_seg" if splits else f"{prefix}_{weak_split}_tags"
    if first in DatasetCatalog.list():
        previous = MetadataCatalog.get(first).get("folder_root", None)
        if previous == root:
            return
        raise ValueError(f"Dataset {first!r} is already registered (from {previous or 'elsewhere'}); "
                         "pick another DATASETS.FOLDER.PREFIX")
    for split in splits:
        register_sem_seg_dataset(f"{prefix}_{split}_sem_seg", lambda split=split: load_voc_sem_seg(root, split),
                                 class_names, colors, IGNORE_LABEL, folder_root=root)
    if weak_split:
        register_voc_weak_labels(f"{prefix}_{weak_split}", lambda: root, weak_split, class_names, colors,
                                 folder_weak_labels(len(class_names)), overseg_dir=OVERSEG_DIR)


def register_folder_dataset_from_config(cfg):
    """DATASETS.FOLDER.* (nothing when ROOT is empty)."""
    node = cfg.DATASETS.get("FOLDER", None)
    if node is None or not node.ROOT:
        return
    if not os.path.isdir(os.path.expanduser(node.ROOT)):
        raise FileNotFoundError(f"DATASETS.FOLDER.ROOT {node.ROOT} is not a folder")
    register_folder_dataset(node.PREFIX, node.ROOT, node.CLASSES, node.COLORS, tuple(node.SPLITS), node.WEAK_SPLIT)
