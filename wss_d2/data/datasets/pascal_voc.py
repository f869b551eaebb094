"""
PASCAL VOC 2012 (+ SBD "aug" labels) for semantic segmentation, and its on-disk layout
(docs/datasets.md §2): JPEGImages/<id>.jpg, label PNGs in SegmentationClass/
(palette) or SegmentationClassAug/ (grayscale), split lists in ImageSets/Segmentation/.
The bundled synthetic dataset uses the same layout.

Registered names (detectron2's own `voc_2012_*` names are detection sets and stay theirs):
    voc_2012_{train,val,trainval}_sem_seg   SegmentationClass, official VOC splits
    voc_2012_train_aug_sem_seg              SegmentationClassAug, ImageSets/Segmentation/train_aug.txt
and the weak-label training sets on train_aug (no GT in their dicts):
    voc_2012_train_aug_tags                 cls_labels.npy (or SIPE's cls_labels_voc.npy)
    voc_2012_train_aug_boxes                Annotations/<id>.xml
    voc_2012_train_aug_scribbles            scribble/seginst/<id>.png (AGMM: unlabelled = 21)
    voc_2012_train_aug_scribbles_rloss      pascal_2012_scribble/<id>.png (rloss: unlabelled = 255)
    voc_2012_train_aug_scribbles_{0.8,0.5,0.3}  scribble/dilate_3_<ratio>/<id>.png (SPML's shortened
                                            scribbles, dilated 3: unlabelled = 255)
    voc_2012_train_aug_points               point/segcls/<id>.png (AGMM: unlabelled = 21)
    voc_2012_train_aug_points_json          voc_whats_the_point.json + ..._bg_from_scribbles.json
    voc_2012_train_aug_pseudo               pseudo_labels/<id>.png (e.g. tools/export_pseudo_labels.py)
Every train_aug weak-label dict also names SegSort's HED-owt-ucm over-segmentation
`hed/<id>.png` as overseg_file_name (read only with INPUT.WEAK.OVERSEG; a missing file is
reported when the mapper reads it).
Root: <datasets root>/VOC2012, else <datasets root>/VOCdevkit/VOC2012.
"""
import os

import numpy as np

from detectron2.structures import BoxMode

from ..weak_labels import load_image_tags, load_whats_the_point, read_voc_xml
from ..weak_labels.kinds import LABEL_MAP_KINDS
from .loading import read_split_ids, require_files
from .paths import get_datasets_root
from .registration import IGNORE_LABEL, register_sem_seg_dataset


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
    ids, images, list_file = _voc_split(voc_root, split, list_dir, image_dir)
    labels = [os.path.join(voc_root, label_dir, i + ".png") for i in ids]
    require_files(labels, "label maps", list_file)
    return [
        {"file_name": image, "sem_seg_file_name": label, "image_id": image_id}
        for image_id, image, label in zip(ids, images, labels)
    ]


def _voc_split(voc_root, split, list_dir, image_dir="JPEGImages"):
    """(ids, image paths, list file) of a split whose images all exist."""
    if not os.path.isdir(voc_root):
        raise FileNotFoundError(
            f"Dataset root {voc_root} does not exist. Put the dataset there, or point "
            "$WSS_DATASETS (or $DETECTRON2_DATASETS) at the folder that holds it; "
            "see datasets/README.md."
        )
    list_file = os.path.join(voc_root, list_dir, split + ".txt")
    ids = read_split_ids(list_file)
    images = [os.path.join(voc_root, image_dir, i + ".jpg") for i in ids]
    require_files(images, "images", list_file)
    return ids, images, list_file


def load_voc_weak_labels(
    voc_root,
    split,
    kind,
    *,
    class_names=VOC_CLASSES,
    list_dir=os.path.join("ImageSets", "Segmentation"),
    tag_file=None,
    sparse_dir=None,
    point_files=None,
    pseudo_dir=None,
    sem_seg_dir=None,
    overseg_dir=None,
):
    """
    Training dicts of one split carrying one weak-label kind (module docstring), in the
    field names of the mapper (`image_labels`, `annotations`, `sparse_sem_seg_file_name`,
    `points`, `pseudo_sem_seg_file_name`); weak_shot dicts keep `sem_seg_file_name`.
    Every listed image must have its label: a missing file or tag entry fails here,
    naming it, before training starts. With `overseg_dir`, each dict also gets
    overseg_file_name = <voc_root>/<overseg_dir>/<id>.png (checked when read, docs/datasets.md §3.6).
    """
    ids, images, list_file = _voc_split(voc_root, split, list_dir)
    dicts = [{"file_name": image, "image_id": image_id} for image_id, image in zip(ids, images)]
    if kind == "tags":
        tags = load_image_tags(tag_file, len(class_names) - 1)
        missing = [i for i in ids if i not in tags]
        if missing:
            raise KeyError(
                f"Image-tag file {tag_file} has no entry for {len(missing)} images of {list_file}, "
                f"e.g. {missing[:5]}"
            )
        for d in dicts:
            d["image_labels"] = tags[d["image_id"]]
    elif kind == "boxes":
        xml_files = [os.path.join(voc_root, "Annotations", i + ".xml") for i in ids]
        require_files(xml_files, "box annotations (Annotations/<id>.xml)", list_file)
        for d, xml_file in zip(dicts, xml_files):
            parsed = read_voc_xml(xml_file, class_names)
            d.update(height=parsed["height"], width=parsed["width"])
            d["annotations"] = [
                {"bbox": o["bbox"], "bbox_mode": BoxMode.XYXY_ABS, "category_id": o["category_id"]}
                for o in parsed["objects"]
            ]
    elif kind == "points_json":
        table = load_whats_the_point([os.path.join(voc_root, f) for f in point_files])
        for d in dicts:
            d["points"] = table.get(d["image_id"], np.zeros((0, 3))).tolist()
    elif kind in LABEL_MAP_KINDS:
        # a label PNG per image: <folder>/<id>.png under the dict field of its kind
        key, folder = {
            "pseudo": ("pseudo_sem_seg_file_name", pseudo_dir),
            "weak_shot": ("sem_seg_file_name", sem_seg_dir),
        }.get(kind, ("sparse_sem_seg_file_name", sparse_dir))
        files = [os.path.join(voc_root, folder, i + ".png") for i in ids]
        require_files(files, f"{kind} label maps ({folder}/<id>.png)", list_file)
        for d, f in zip(dicts, files):
            d[key] = f
    else:
        raise ValueError(f"Unknown weak-label kind {kind!r}")
    if overseg_dir is not None:
        for d in dicts:
            d["overseg_file_name"] = os.path.join(voc_root, overseg_dir, d["image_id"] + ".png")
    return dicts


def find_tag_file(voc_root, candidates=("cls_labels.npy", "cls_labels_voc.npy", "cls_labels_onehot.npy")):
    """The first tag file present (wss_d2/IRN, SIPE and ToCo/MCC names)."""
    for name in candidates:
        path = os.path.join(voc_root, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"No image-tag file in {voc_root}: expected one of {list(candidates)}; "
        "write one with `python datasets/prepare_voc_weak_labels.py --tags`."
    )


# name suffix: (kind, loader arguments, extra metadata)
VOC_WEAK_LABELS = {
    "tags": ("tags", {}, {}),
    "boxes": ("boxes", {}, {}),
    "scribbles": ("scribbles", {"sparse_dir": "scribble/seginst"}, {"sparse_unlabeled_value": 21}),
    "scribbles_rloss": (
        "scribbles",
        {"sparse_dir": "pascal_2012_scribble"},
        {"sparse_unlabeled_value": 255, "sparse_void_value": None},
    ),
    "points": ("points", {"sparse_dir": "point/segcls"}, {"sparse_unlabeled_value": 21}),
    # SPML's scribbles shortened to 80/50/30 % of their length, already dilated 3 (docs/datasets.md §3.3)
    **{
        f"scribbles_{ratio}": (
            "scribbles",
            {"sparse_dir": f"scribble/dilate_3_{ratio}"},
            {"sparse_unlabeled_value": 255, "sparse_void_value": None},
        )
        for ratio in ("0.8", "0.5", "0.3")
    },
    "points_json": (
        "points_json",
        {"point_files": ("voc_whats_the_point.json", "voc_whats_the_point_bg_from_scribbles.json")},
        {},
    ),
    "pseudo": ("pseudo", {"pseudo_dir": "pseudo_labels"}, {}),
}


# SegSort's HED-owt-ucm over-segmentations of VOC (docs/spml.md §3.7), under the VOC root
VOC_OVERSEG_DIR = "hed"


def register_voc_weak_labels(prefix, find_root, split, class_names, colors, weak_labels, overseg_dir=None):
    """
    Register `<prefix>_<suffix>` for each entry of `weak_labels` (see VOC_WEAK_LABELS); with
    `overseg_dir`, the dicts name <root>/<overseg_dir>/<id>.png as overseg_file_name.
    """
    for suffix, (kind, arguments, extra) in weak_labels.items():
        metadata = {"sparse_void_value": 255, **extra} if "sparse_unlabeled_value" in extra else dict(extra)
        if overseg_dir is not None:
            metadata["overseg_dir"] = overseg_dir
            arguments = {**arguments, "overseg_dir": overseg_dir}

        def loader(kind=kind, arguments=arguments):
            root = find_root()
            if kind == "tags" and "tag_file" not in arguments:
                arguments = {**arguments, "tag_file": find_tag_file(root)}
            return load_voc_weak_labels(root, split, kind, class_names=class_names, **arguments)

        register_sem_seg_dataset(
            f"{prefix}_{suffix}",
            loader,
            class_names,
            colors,
            IGNORE_LABEL,
            weak_label="points" if kind == "points_json" else kind,
            **metadata,
        )


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
    register_voc_weak_labels(
        "voc_2012_train_aug", find_voc_root, "train_aug", VOC_CLASSES, voc_colors(len(VOC_CLASSES)), VOC_WEAK_LABELS,
        overseg_dir=VOC_OVERSEG_DIR,
    )


register_pascal_voc()
