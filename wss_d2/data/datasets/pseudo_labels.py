"""
Pseudo-label training sets: any registered dataset's images paired with label PNGs written
by `tools/export_pseudo_labels.py` (or another pipeline) in `<folder>/<image_id>.png`.

A config names them in DATASETS.PSEUDO_LABELS as [name, source dataset, folder] triples;
`register_pseudo_labels_from_config` registers them in every process before training, so a
second-stage run needs nothing but its config file.
"""
import os

from detectron2.data import DatasetCatalog, MetadataCatalog

from .loading import require_files
from .registration import register_sem_seg_dataset

__all__ = ["register_pseudo_label_dataset", "register_pseudo_labels_from_config"]

# fields a pseudo-label set keeps from its source dicts: the image, never its labels
_KEPT_FIELDS = ("file_name", "image_id", "height", "width")


def load_pseudo_label_dataset(source, folder):
    dicts = []
    for record in DatasetCatalog.get(source):
        kept = {k: record[k] for k in _KEPT_FIELDS if k in record}
        image_id = kept.setdefault("image_id", os.path.splitext(os.path.basename(record["file_name"]))[0])
        kept["pseudo_sem_seg_file_name"] = os.path.join(folder, f"{image_id}.png")
        dicts.append(kept)
    require_files([d["pseudo_sem_seg_file_name"] for d in dicts], f"pseudo labels of {source}", folder)
    return dicts


def register_pseudo_label_dataset(name, source, folder):
    """Register `name`: the images of `source` with the pseudo labels in `folder`."""
    folder = os.path.abspath(os.path.expanduser(folder))
    if name in DatasetCatalog.list():
        previous = MetadataCatalog.get(name).get("pseudo_sem_seg_root", None)
        if previous == folder and MetadataCatalog.get(name).get("source_dataset", None) == source:
            return  # the same registration again (e.g. one per process)
        raise ValueError(f"Dataset {name!r} is already registered (from {previous or 'elsewhere'}); pick another name")
    if source not in DatasetCatalog.list():
        raise KeyError(f"DATASETS.PSEUDO_LABELS: source dataset {source!r} of {name!r} is not registered")
    meta = MetadataCatalog.get(source)
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


def register_pseudo_labels_from_config(cfg):
    for entry in cfg.DATASETS.PSEUDO_LABELS:
        if len(entry) != 3:
            raise ValueError(
                f"DATASETS.PSEUDO_LABELS entries are [name, source dataset, folder]; got {list(entry)}"
            )
        register_pseudo_label_dataset(*entry)
