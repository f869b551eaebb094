"""
DensePose-COCO body parts in SPML's layout (docs/datasets.md §9): 15 classes
(0 = background, 1..14 coarse parts, densepose_parts.py), 255 = void.

Layout under `<datasets root>/densepose/`:
    images/{train2014,val2014}/<stem>.jpg
    segcls/densepose/gray/<stem>.png          dense part labels
    segcls/densepose_points/gray/<stem>.png   point labels: parts on points, 15 unlabelled, 255 void
    seginst/pmi_0.1_256/<stem>.png            PMI-owt-ucm over-segmentations (8-bit region ids)
    train2014.txt, valminusminival2014.txt, minival2014.txt, train2014_points.txt
List lines: `images/<split>/<stem>.jpg segcls/.../<stem>.png [third column]`, paths relative
to the densepose folder. The point-training list's third column, when it differs from the
second, is the image's over-segmentation (overseg_file_name); without one the dicts name
seginst/pmi_0.1_256/<stem>.png (checked when the mapper reads it, INPUT.WEAK.OVERSEG).

Registered names (detectron2's DensePose project owns `densepose_coco_2014_{train,...}`):
    densepose_coco_2014_{train,valminusminival,minival}_parts_sem_seg   full part labels
    densepose_coco_2014_train_parts_points                              sparse_sem_seg_file_name,
                                                                        overseg_file_name
Every name carries `flip_label_map` (left/right part swap the mapper applies on a flip).
"""
import functools
import os

from ..weak_labels.kinds import SPARSE_KINDS
from .densepose_parts import DENSEPOSE_PART_CLASSES, FLIP_PART_MAP
from .loading import require_dataset_dir, require_files
from .paths import get_datasets_root
from .pascal_voc import voc_colors
from .registration import IGNORE_LABEL, record_dataset_roots, register_sem_seg_dataset

DENSEPOSE_PART_COLORS = voc_colors(len(DENSEPOSE_PART_CLASSES))
POINTS_UNLABELED_VALUE = len(DENSEPOSE_PART_CLASSES)  # 15, SPML's convention
# SPML's PMI-owt-ucm over-segmentations (docs/spml.md §3.7), under the densepose folder
DENSEPOSE_OVERSEG_DIR = os.path.join("seginst", "pmi_0.1_256")
# name: (list file, weak_label); "points" lists pair images with sparse_sem_seg_file_name
_DENSEPOSE_SPLITS = {
    "densepose_coco_2014_train_parts_sem_seg": ("train2014.txt", "full"),
    "densepose_coco_2014_valminusminival_parts_sem_seg": ("valminusminival2014.txt", "full"),
    "densepose_coco_2014_minival_parts_sem_seg": ("minival2014.txt", "full"),
    "densepose_coco_2014_train_parts_points": ("train2014_points.txt", "points"),
}
DENSEPOSE_DATASET_NAMES = tuple(_DENSEPOSE_SPLITS)


def find_densepose_root(datasets_root=None):
    root = os.path.join(datasets_root or get_datasets_root(), "densepose")
    return require_dataset_dir(root, "DensePose (SPML layout)")


def read_pair_list(list_file, with_third=False):
    """(image path, label path) of every line, from the first two columns as written; with
    `with_third`, (image, label, third column or None)."""
    if not os.path.isfile(list_file):
        raise FileNotFoundError(f"Split list not found: {list_file}")
    pairs = []
    with open(list_file) as f:
        for line_number, line in enumerate(f, start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) < 2:
                raise ValueError(
                    f"{list_file}, line {line_number}: expected '<image path> <label path> [...]', "
                    f"got {line.strip()!r}"
                )
            third = tokens[2] if len(tokens) > 2 else None
            pairs.append((tokens[0], tokens[1], third) if with_third else (tokens[0], tokens[1]))
    if not pairs:
        raise ValueError(f"Split list {list_file} lists no images")
    return pairs


def load_densepose_parts(densepose_root, list_name, label_key="sem_seg_file_name", with_overseg=False):
    """
    Dicts (file_name, image_id, `label_key`) of the list `list_name`; the list's paths are
    relative to `densepose_root` (a leading '/' is tolerated). Every image and label must
    exist. `with_overseg` adds overseg_file_name: the third column when it differs from the
    label, else DENSEPOSE_OVERSEG_DIR/<stem>.png (not checked here; the mapper reads it).
    """
    list_file = os.path.join(densepose_root, list_name)
    dicts = []
    for image, label, third in read_pair_list(list_file, with_third=True):
        stem = os.path.splitext(os.path.basename(image))[0]
        record = {
            "file_name": os.path.join(densepose_root, image.lstrip("/")),
            "image_id": stem,
            label_key: os.path.join(densepose_root, label.lstrip("/")),
        }
        if with_overseg:
            overseg = third if third is not None and third != label else os.path.join(DENSEPOSE_OVERSEG_DIR, stem + ".png")
            record["overseg_file_name"] = os.path.join(densepose_root, overseg.lstrip("/"))
        dicts.append(record)
    require_files([d["file_name"] for d in dicts], "images", list_file)
    require_files([d[label_key] for d in dicts], "label maps", list_file)
    return dicts


def _load_and_record(name, list_name, label_key):
    """Load a registered list and record its folders in the metadata."""
    root = find_densepose_root()
    dicts = load_densepose_parts(root, list_name, label_key, with_overseg=label_key == "sparse_sem_seg_file_name")
    label_root = os.path.commonpath([os.path.dirname(d[label_key]) for d in dicts])
    root_key = label_key[: -len("file_name")] + "root"  # sem_seg_root / sparse_sem_seg_root
    record_dataset_roots(name, image_root=os.path.join(root, "images"), **{root_key: label_root})
    return dicts


def register_densepose():
    for name, (list_name, weak_label) in _DENSEPOSE_SPLITS.items():
        sparse = weak_label in SPARSE_KINDS
        label_key = "sparse_sem_seg_file_name" if sparse else "sem_seg_file_name"
        sparse_metadata = {"sparse_unlabeled_value": POINTS_UNLABELED_VALUE, "sparse_void_value": IGNORE_LABEL}
        register_sem_seg_dataset(
            name,
            functools.partial(_load_and_record, name, list_name, label_key),
            DENSEPOSE_PART_CLASSES,
            DENSEPOSE_PART_COLORS,
            IGNORE_LABEL,
            background_class=0,
            weak_label=weak_label,
            flip_label_map=list(FLIP_PART_MAP),
            **(sparse_metadata if sparse else {}),
            **({"overseg_dir": DENSEPOSE_OVERSEG_DIR} if sparse else {}),
        )


register_densepose()
