"""
PASCAL VOC 2012 (+ SBD "aug" labels) for semantic segmentation, and its on-disk layout
(shared/specs/datasets.md §2): JPEGImages/<id>.jpg, label PNGs in SegmentationClass/
(palette) or SegmentationClassAug/ (grayscale), split lists in ImageSets/Segmentation/.
The bundled synthetic dataset uses the same layout.

Registered names (detectron2's own `voc_2012_*` names are detection sets and stay theirs):
    voc_2012_{train,val,trainval}_sem_seg   SegmentationClass, official VOC splits
    voc_2012_train_aug_sem_seg              SegmentationClassAug, ImageSets/Segmentation/train_aug.txt
Root: <datasets root>/VOC2012, else <datasets root>/VOCdevkit/VOC2012.
"""
import os

import numpy as np

from .paths import get_datasets_root
from .registration import register_sem_seg_dataset

MAX_LISTED_MISSING = 5
IGNORE_LABEL = 255
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)
# name: (split list, label folder)
_VOC_SEM_SEG_SPLITS = {
    "voc_2012_train_sem_seg": ("train", "SegmentationClass"),
    "voc_2012_val_sem_seg": ("val", "SegmentationClass"),
    "voc_2012_trainval_sem_seg": ("trainval", "SegmentationClass"),
    "voc_2012_train_aug_sem_seg": ("train_aug", "SegmentationClassAug"),
}


def voc_palette():
    """The 256-entry VOC colour palette as a flat [r, g, b, ...] list (index 255 included)."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        value = index
        for bit in range(8):
            for channel in range(3):
                palette[index, channel] |= ((value >> channel) & 1) << (7 - bit)
            value >>= 3
    return palette.reshape(-1).tolist()


def voc_colors(num_classes):
    """Colours of the first `num_classes` label values, as detectron2's `stuff_colors`."""
    flat = voc_palette()
    return [flat[3 * i : 3 * i + 3] for i in range(num_classes)]


def read_split_ids(list_file):
    """
    Image ids of a split list. Accepts every list style of the standard repositories: bare
    ids, `/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png`, `<id>.jpg <id>.png`, and
    multi-column relative paths: the id is the first token's basename without extension.
    """
    if not os.path.isfile(list_file):
        raise FileNotFoundError(f"Split list not found: {list_file}")
    ids = []
    with open(list_file) as f:
        for line in f:
            tokens = line.split()
            if tokens:
                ids.append(os.path.splitext(os.path.basename(tokens[0]))[0])
    if not ids:
        raise ValueError(f"Split list {list_file} lists no images")
    return ids


def _require_files(paths, what, list_file):
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        shown = "\n  ".join(missing[:MAX_LISTED_MISSING])
        more = len(missing) - MAX_LISTED_MISSING
        raise FileNotFoundError(
            f"{len(missing)} {what} listed in {list_file} are missing:\n  {shown}"
            + (f"\n  ... and {more} more" if more > 0 else "")
        )


def load_voc_sem_seg(
    voc_root,
    split,
    *,
    image_dir="JPEGImages",
    label_dir="SegmentationClass",
    list_dir=os.path.join("ImageSets", "Segmentation"),
):
    """
    Dataset dicts (file_name, sem_seg_file_name, image_id) of one split. Every listed image
    and label must exist: the check runs here, before training starts, so a broken dataset
    fails in seconds rather than hours into a run.
    """
    if not os.path.isdir(voc_root):
        raise FileNotFoundError(
            f"Dataset root {voc_root} does not exist. Put the dataset there, or point "
            "$WSS_DATASETS (or $DETECTRON2_DATASETS) at the folder that holds it; "
            "see datasets/README.md."
        )
    list_file = os.path.join(voc_root, list_dir, split + ".txt")
    ids = read_split_ids(list_file)
    images = [os.path.join(voc_root, image_dir, i + ".jpg") for i in ids]
    labels = [os.path.join(voc_root, label_dir, i + ".png") for i in ids]
    _require_files(images, "images", list_file)
    _require_files(labels, "label maps", list_file)
    return [
        {"file_name": image, "sem_seg_file_name": label, "image_id": image_id}
        for image_id, image, label in zip(ids, images, labels)
    ]


def find_voc_root(datasets_root=None):
    """<root>/VOC2012 (detectron2's place), else <root>/VOCdevkit/VOC2012 (the WSSS repos')."""
    datasets_root = datasets_root or get_datasets_root()
    candidates = [os.path.join(datasets_root, "VOC2012"), os.path.join(datasets_root, "VOCdevkit", "VOC2012")]
    for candidate in candidates:
        if os.path.isdir(candidate):
            return candidate
    raise FileNotFoundError(
        f"PASCAL VOC 2012 not found: neither {candidates[0]} nor {candidates[1]} exists. Put it "
        "there, or point $WSS_DATASETS (or $DETECTRON2_DATASETS) at the folder that holds it; "
        "see datasets/README.md."
    )


def register_pascal_voc():
    for name, (split, label_dir) in _VOC_SEM_SEG_SPLITS.items():
        register_sem_seg_dataset(
            name,
            lambda split=split, label_dir=label_dir: load_voc_sem_seg(find_voc_root(), split, label_dir=label_dir),
            VOC_CLASSES,
            voc_colors(len(VOC_CLASSES)),
            IGNORE_LABEL,
        )


register_pascal_voc()
