"""
The pre-training check of sparse-label files (docs/agmm.md §1.1, §10.1): a histogram of the
raw values of a sample of files must show the unlabelled value the config expects. A file
set that marks unlabelled pixels with another value (rloss/TEL files use 255, the usual void
value) would otherwise train silently on "labelled pixels only".
"""
import logging

import numpy as np

from detectron2.data import DatasetCatalog, MetadataCatalog

from .readers import read_label_map
from .weak_labels.kinds import SPARSE_KINDS

__all__ = ["check_sparse_label_encoding", "check_sparse_labels_from_config", "resolve_sparse_values"]

logger = logging.getLogger(__name__)
MAX_LABELLED_SHARE = 0.5  # sparse labels cover a few percent of the pixels, never most of them


def resolve_sparse_values(cfg, metadata):
    """(unlabelled, void) raw values: INPUT.SPARSE.UNLABELED_RAW / VOID_RAW, or the dataset's
    metadata (sparse_unlabeled_value / sparse_void_value) where the config says -1."""
    unlabeled, void = cfg.INPUT.SPARSE.UNLABELED_RAW, cfg.INPUT.SPARSE.VOID_RAW
    if unlabeled < 0:
        unlabeled = metadata.get("sparse_unlabeled_value")
    if void < 0:
        void = metadata.get("sparse_void_value", 255)
    return (cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES if unlabeled is None else unlabeled), void


def check_sparse_label_encoding(label_files, num_classes, unlabeled_value, void_value, name="sparse labels",
                                max_labelled_share=MAX_LABELLED_SHARE, dense_labels=False):
    """
    Histogram the raw values of `label_files`; raise ValueError naming the files, the values
    and the config key to change when the unlabelled value never occurs or when labelled
    pixels are more than `max_labelled_share` of the pixels (None: no limit).

    dense_labels: CAM-derived labels (make_cam_labels.py), which label most pixels and may label
    all of them: no share limit, a missing unlabelled value is allowed (logged), but a value that
    is neither a class id, the unlabelled value nor the void value raises (it would mean the files
    use another unlabelled value than the dataset's metadata). Returns the shares of labelled,
    unlabelled and void pixels.
    """
    if not label_files:
        raise ValueError(f"{name}: no sparse-label files to check")
    histogram = np.zeros(256, dtype=np.int64)
    for label_file in label_files:
        counts = np.bincount(read_label_map(label_file).ravel().astype(np.int64), minlength=256)
        if len(counts) > len(histogram):
            histogram = np.pad(histogram, (0, len(counts) - len(histogram)))
        histogram[: len(counts)] += counts
    total = histogram.sum()
    shares = {
        "labelled": histogram[:num_classes].sum() / total,
        "unlabelled": histogram[unlabeled_value] / total if unlabeled_value < len(histogram) else 0.0,
        "void": histogram[void_value] / total if void_value is not None and void_value < len(histogram) else 0.0,
    }
    commonest = int(histogram.argmax())
    where = f"{name}: in the {len(label_files)} files checked (e.g. {label_files[0]})"
    hint = (
        f"value {commonest} is class {commonest}, so these files cannot mark unlabelled pixels"
        if commonest < num_classes
        else f"if {commonest} means unlabelled, set INPUT.SPARSE.UNLABELED_RAW {commonest}"
    )
    if dense_labels:
        known = set(range(num_classes)) | {unlabeled_value, void_value}
        unexpected = [v for v in np.flatnonzero(histogram).tolist() if v not in known]
        if unexpected:
            raise ValueError(
                f"{where} the values {unexpected} are neither a class id 0..{num_classes - 1}, the unlabelled value "
                f"{unlabeled_value} (INPUT.SPARSE.UNLABELED_RAW, or the dataset's sparse_unlabeled_value) nor the "
                f"void value {void_value}: the files mark unlabelled pixels differently from the dataset's metadata; "
                f"if {unexpected[0]} means unlabelled, set INPUT.SPARSE.UNLABELED_RAW {unexpected[0]}."
            )
        if shares["unlabelled"] == 0:
            logger.warning(f"{where} every pixel is labelled or void (no unlabelled value {unlabeled_value})")
        return shares
    if shares["unlabelled"] == 0:
        raise ValueError(
            f"{where} no pixel has the unlabelled value {unlabeled_value} (INPUT.SPARSE.UNLABELED_RAW, or the "
            f"dataset's sparse_unlabeled_value); the commonest value is {commonest} "
            f"({histogram[commonest] / total:.1%} of the pixels). The terms on unlabelled pixels (AGMM's GMM, "
            f"SPML's clustering) would see labelled pixels only; {hint}."
        )
    if max_labelled_share is not None and shares["labelled"] > max_labelled_share:
        raise ValueError(
            f"{where} {shares['labelled']:.1%} of the pixels carry a class id 0..{num_classes - 1}: these are "
            f"not sparse labels, or unlabelled pixels use a class id; the unlabelled value "
            f"{unlabeled_value} covers {shares['unlabelled']:.1%}; {hint}."
        )
    return shares


def check_sparse_labels_from_config(cfg):
    """
    Check every training set with sparse-label files (INPUT.SPARSE.CHECK_FILES files each,
    evenly spaced; 0 = off) before training starts; log the label shares.
    """
    max_files = cfg.INPUT.SPARSE.CHECK_FILES
    if max_files <= 0:
        return
    for dataset_name in cfg.DATASETS.TRAIN:
        weak_label = MetadataCatalog.get(dataset_name).get("weak_label", None)
        if weak_label not in SPARSE_KINDS:
            continue  # only sparse sets have label files to check; skip loading the others' dicts twice
        files = [d["sparse_sem_seg_file_name"] for d in DatasetCatalog.get(dataset_name) if "sparse_sem_seg_file_name" in d]
        if not files:
            continue
        files = files[:: max(1, len(files) // max_files)][:max_files]
        unlabeled, void = resolve_sparse_values(cfg, MetadataCatalog.get(dataset_name))
        shares = check_sparse_label_encoding(
            files, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, unlabeled, void, name=f"dataset {dataset_name}",
            dense_labels=weak_label == "cam_labels",
        )
        logger.info(
            f"Sparse labels of {dataset_name} ({len(files)} files checked): labelled {shares['labelled']:.2%}, "
            f"unlabelled {shares['unlabelled']:.2%}, void {shares['void']:.2%}"
        )
