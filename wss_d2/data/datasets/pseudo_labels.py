"""
Pseudo-label training sets: any registered dataset's images paired with label PNGs written
by `tools/export_pseudo_labels.py` (or another pipeline) in `<folder>/<image_id>.png`.

A config names them in DATASETS.PSEUDO_LABELS as [name, source dataset, folder] triples;
`register_pseudo_labels_from_config` registers them in every process before training, so a
second-stage run needs nothing but its config file.

A folder written by `datasets/make_cam_labels.py` (it holds `cam_labels.json`) holds SPML's
CAM-derived stage-A labels of tags or boxes, with unlabelled pixels (value K): it is
registered as a sparse set (weak_label "cam_labels", sparse_sem_seg_file_name, unlabelled K,
void 255) instead of a dense pseudo-label set.
"""
import json
import os

from detectron2.data import DatasetCatalog, MetadataCatalog

from .loading import require_files
from .registration import register_sem_seg_dataset

__all__ = ["register_pseudo_label_dataset", "register_cam_dataset", "register_pseudo_labels_from_config"]

# fields a pseudo-label set keeps from its source dicts: the image, never its labels
_KEPT_FIELDS = ("file_name", "image_id", "height", "width", "overseg_file_name")
# the marker file of a folder of CAM-derived labels (datasets/make_cam_labels.py)
CAM_LABELS_MARKER = "cam_labels.json"
# in the name of the temporary folder an export writes before moving it into place
PARTIAL_EXPORT_MARKER = ".partial-"


def _check_finished(folder, config_key):
    """A folder left by an interrupted export is never a training set."""
    if PARTIAL_EXPORT_MARKER in os.path.basename(folder):
        raise ValueError(
            f"DATASETS.{config_key}: {folder} is the temporary folder of an unfinished export "
            "(tools/export_pseudo_labels.py moves it into place only when complete); rerun the export"
        )


def _with_files(source, folder, field, extension, kept_fields=None):
    """The source dicts (only `kept_fields`, or all) with `field` = <folder>/<image_id><extension>."""
    dicts = []
    for record in DatasetCatalog.get(source):
        record = {k: record[k] for k in kept_fields if k in record} if kept_fields else dict(record)
        image_id = record.setdefault("image_id", os.path.splitext(os.path.basename(record["file_name"]))[0])
        record[field] = os.path.join(folder, f"{image_id}{extension}")
        dicts.append(record)
    require_files([d[field] for d in dicts], f"{field} of {source}", folder)
    return dicts


def _registered_before(name, source, folder, root_key, config_key):
    """
    True when `name` is already this registration (e.g. once per process); an error when the
    name is taken by another one or `source` is not registered (DATASETS.<config_key>).
    """
    if name in DatasetCatalog.list():
        previous = MetadataCatalog.get(name).get(root_key, None)
        if previous == folder and MetadataCatalog.get(name).get("source_dataset", None) == source:
            return True
        raise ValueError(f"Dataset {name!r} is already registered (from {previous or 'elsewhere'}); pick another name")
    if source not in DatasetCatalog.list():
        raise KeyError(f"DATASETS.{config_key}: source dataset {source!r} of {name!r} is not registered")
    return False


def load_pseudo_label_dataset(source, folder):
    return _with_files(source, folder, "pseudo_sem_seg_file_name", ".png", _KEPT_FIELDS)


def load_cam_label_dataset(source, folder):
    return _with_files(source, folder, "sparse_sem_seg_file_name", ".png", _KEPT_FIELDS)


def register_pseudo_label_dataset(name, source, folder):
    """Register `name`: the images of `source` with the pseudo labels in `folder` (CAM-derived
    labels, module docstring, when the folder holds cam_labels.json)."""
    folder = os.path.abspath(os.path.expanduser(folder))
    _check_finished(folder, "PSEUDO_LABELS")
    if _registered_before(name, source, folder, "pseudo_sem_seg_root", "PSEUDO_LABELS"):
        return
    meta = MetadataCatalog.get(source)
    if os.path.isfile(os.path.join(folder, CAM_LABELS_MARKER)):
        with open(os.path.join(folder, CAM_LABELS_MARKER)) as f:
            info = json.load(f)
        num_classes = len(meta.stuff_classes)
        if info.get("unlabeled_value") != num_classes:
            raise ValueError(
                f"DATASETS.PSEUDO_LABELS: {folder} marks unlabelled pixels with {info.get('unlabeled_value')} "
                f"but {source} has {num_classes} classes (unlabelled = K = {num_classes})"
            )
        register_sem_seg_dataset(
            name,
            lambda: load_cam_label_dataset(source, folder),
            meta.stuff_classes,
            meta.get("stuff_colors", None),
            meta.get("ignore_label", 255),
            background_class=meta.get("background_class", 0),
            weak_label="cam_labels",
            sparse_unlabeled_value=num_classes,
            sparse_void_value=meta.get("ignore_label", 255),
            flip_label_map=meta.get("flip_label_map", None),
            cam_label_kind=info.get("kind"),
            pseudo_sem_seg_root=folder,
            source_dataset=source,
        )
        return
    register_sem_seg_dataset(
        name,
        lambda: load_pseudo_label_dataset(source, folder),
        meta.stuff_classes,
        meta.get("stuff_colors", None),
        meta.get("ignore_label", 255),
        background_class=meta.get("background_class", 0),
        weak_label="pseudo",
        pseudo_sem_seg_root=folder,
        source_dataset=source,
    )


def load_cam_dataset(source, folder):
    """The source dicts (labels and tags kept) with cam_file_name = <folder>/<image_id>.npy."""
    return _with_files(source, folder, "cam_file_name", ".npy")


def register_cam_dataset(name, source, folder):
    """
    Register `name`: `source` (its dicts unchanged) with the CAM file of each image in
    `folder` (IRN or SIPE .npy dicts, e.g. from tools/export_pseudo_labels.py --save-cams),
    for methods that refine CAMs (IRN's random walk).
    """
    folder = os.path.abspath(os.path.expanduser(folder))
    _check_finished(folder, "CAMS")
    if _registered_before(name, source, folder, "cam_root", "CAMS"):
        return
    meta = MetadataCatalog.get(source).as_dict()
    for key in ("name", "stuff_classes", "stuff_colors", "ignore_label", "evaluator_type"):
        meta.pop(key, None)
    source_meta = MetadataCatalog.get(source)
    register_sem_seg_dataset(
        name,
        lambda: load_cam_dataset(source, folder),
        source_meta.stuff_classes,
        source_meta.get("stuff_colors", None),
        source_meta.get("ignore_label", 255),
        **{**meta, "cam_root": folder, "source_dataset": source},
    )


def register_pseudo_labels_from_config(cfg):
    """DATASETS.PSEUDO_LABELS and DATASETS.CAMS: [name, source dataset, folder] triples."""
    for key, register in (("PSEUDO_LABELS", register_pseudo_label_dataset), ("CAMS", register_cam_dataset)):
        for entry in cfg.DATASETS.get(key, []):
            if len(entry) != 3:
                raise ValueError(f"DATASETS.{key} entries are [name, source dataset, folder]; got {list(entry)}")
            register(*entry)
