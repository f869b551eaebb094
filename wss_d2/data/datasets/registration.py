"""
Registering semantic-segmentation datasets with detectron2's catalogs.

Metadata every wss_d2 semantic dataset carries (read by the mappers and evaluators):
    stuff_classes, stuff_colors   names and colours of the label values 0..K-1
    ignore_label                  255: void pixels, never trained on nor evaluated
    evaluator_type                "sem_seg"
    background_class              label value of the background class (0 for VOC-style
                                  datasets), or None where every class is a "thing/stuff"
                                  (COCO-Stuff, ADE20K, Cityscapes); image tags never list it
    weak_label                    what the training dicts carry besides the image: one of
                                  WEAK_LABEL_KINDS (wss_d2.data.weak_labels.kinds)
Sparse datasets (scribbles, points, clicks) add, for their raw PNG values:
    sparse_unlabeled_value        raw value of "real content, no label" (K in the AGMM/SPML
                                  releases, 255 in rloss/TEL-style files)
    sparse_void_value             raw value of "void", or None when the files have none
Weak-shot datasets add base_classes / novel_classes (sorted label values) and SimFormer's
aliases c_base_dids / c_novel_dids.

Also the registration helpers the dataset modules share: `record_dataset_roots` (folders
resolved at load time go to the metadata) and `register_weak_shot_dataset` (COCO-Stuff-10K
and ADE20K weak-shot splits).
"""
import logging

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..weak_labels.kinds import WEAK_LABEL_KINDS

logger = logging.getLogger(__name__)

IGNORE_LABEL = 255


def register_sem_seg_dataset(
    name,
    loader,
    stuff_classes,
    stuff_colors,
    ignore_label=IGNORE_LABEL,
    *,
    background_class=0,
    weak_label="full",
    evaluator_type="sem_seg",
    **metadata,
):
    """Register `loader` (called on first use) under `name` with the metadata every wss_d2
    semantic dataset carries; `metadata` adds dataset-specific fields."""
    if weak_label not in WEAK_LABEL_KINDS:
        raise ValueError(f"Dataset {name}: unknown weak_label {weak_label!r}; expected one of {WEAK_LABEL_KINDS}")
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(
        stuff_classes=list(stuff_classes),
        stuff_colors=stuff_colors,
        ignore_label=ignore_label,
        evaluator_type=evaluator_type,
        background_class=background_class,
        weak_label=weak_label,
        **metadata,
    )


def record_dataset_roots(name, **roots):
    """
    Store the folders a loader resolved (image_root, sem_seg_root, ...) in the dataset's
    metadata. Done when the dataset is loaded, because the datasets root is read at call
    time; a later load from another root replaces the values.
    """
    metadata = MetadataCatalog.get(name)
    for key, value in roots.items():
        if getattr(metadata, key, value) != value:
            delattr(metadata, key)  # Metadata.set refuses to change a value
        setattr(metadata, key, value)


def weak_shot_metadata(novel_classes, num_classes):
    """base_classes / novel_classes (sorted label values) and SimFormer's aliases."""
    novel = sorted(set(novel_classes))
    if len(novel) != len(novel_classes) or not all(0 <= c < num_classes for c in novel):
        raise ValueError(
            f"Novel classes must be distinct label values in 0..{num_classes - 1}: {novel_classes}"
        )
    base = [c for c in range(num_classes) if c not in set(novel)]
    return {"base_classes": base, "novel_classes": novel, "c_base_dids": base, "c_novel_dids": novel}


def drop_skipped_images(dicts, skipped_ids, dataset_name):
    """Remove the images SimFormer's training loader skips (labels all ignore), with a log line."""
    kept = [d for d in dicts if d["image_id"] not in skipped_ids]
    dropped = sorted(d["image_id"] for d in dicts if d["image_id"] in skipped_ids)
    if dropped:
        logger.info(f"{dataset_name}: skipping {len(dropped)} images that SimFormer skips: {dropped}")
    return kept


def register_weak_shot_dataset(
    name, load, classes, colors, novel_classes, *, is_train, skipped_ids=(), **metadata
):
    """
    Register a weak-shot split. `load()` returns (dicts, roots). Training sets (weak_label
    "weak_shot") keep sem_seg_file_name and drop `skipped_ids`; evaluation sets are full-label
    sets with the same base/novel metadata. `metadata` adds dataset-specific fields.
    """

    def loader():
        dicts, roots = load()
        if is_train:
            dicts = drop_skipped_images(dicts, skipped_ids, name)
        record_dataset_roots(name, **roots)
        return dicts

    register_sem_seg_dataset(
        name,
        loader,
        classes,
        colors,
        IGNORE_LABEL,
        background_class=None,
        weak_label="weak_shot" if is_train else "full",
        **weak_shot_metadata(novel_classes, len(classes)),
        **metadata,
    )
