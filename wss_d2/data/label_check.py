"""
Pre-training checks of the label files, so that a bad set fails in seconds instead of hours
into a run (Trainer.build_train_loader calls both):

* evaluation sets (DATASETS.TEST): every label map, up to TEST.CHECK_LABELS_MAX_FILES of them
  (an evenly spaced, logged sample beyond), must hold class ids or ignore values only and
  have its image's size; detectron2 would otherwise find a bad file at the final evaluation;
* training sets (DATASETS.TRAIN): at least one image must have a non-empty weak label. The
  mapper skips empty ones (INPUT.WEAK.ON_EMPTY); a set with no usable image would otherwise
  be found only after the loader has read and skipped every image.
"""
import logging
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from detectron2.data import DatasetCatalog, MetadataCatalog

from .readers import read_image_size, read_label_map

__all__ = [
    "check_evaluation_labels",
    "check_evaluation_labels_from_config",
    "check_not_all_empty",
    "check_training_sets_not_all_empty",
]

logger = logging.getLogger(__name__)
MAX_LISTED = 5  # problems quoted in an error message
# label reads release the GIL (PIL decodes in C), so threads overlap them
NUM_THREADS = min(8, os.cpu_count() or 1)
FIRST_CHUNK = 8  # dicts examined before the first stop of the empty-label scan; doubles after


def _evenly_spaced(items, max_items):
    """`items` if at most `max_items`, else `max_items` of them evenly spaced, the first included."""
    if len(items) <= max_items:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, max_items).round().astype(np.int64)]


def _label_map_problem(record, num_classes, allowed):
    """Why the label map of `record` is unusable for evaluation, or None."""
    label_file = record["sem_seg_file_name"]
    try:
        label = read_label_map(label_file)
        height, width = read_image_size(record["file_name"])
    except (FileNotFoundError, ValueError) as e:
        return str(e)
    if label.shape[:2] != (height, width):
        return (
            f"{label_file} is {label.shape[1]}x{label.shape[0]} (WxH) but its image "
            f"{record['file_name']} is {width}x{height}"
        )
    if label.max() < num_classes:  # the common case, without a histogram
        return None
    values = np.unique(label[label >= num_classes])
    bad = values[~np.isin(values, allowed)]
    if len(bad):
        return (
            f"{label_file} has values {bad[:10].tolist()} outside the class ids 0..{num_classes - 1} "
            f"and the ignore values {sorted(allowed)}"
        )
    return None


def check_evaluation_labels(dataset_name, max_files):
    """
    Check the label maps of evaluation set `dataset_name`: all of them up to `max_files`, an
    evenly spaced sample of `max_files` beyond (logged). Raise ValueError naming the set, the
    files and their bad values or sizes. Returns the number of files checked.
    """
    meta = MetadataCatalog.get(dataset_name)
    dicts = DatasetCatalog.get(dataset_name)
    unlabelled = [d["file_name"] for d in dicts if not d.get("sem_seg_file_name")]
    if unlabelled:
        raise ValueError(
            f"Evaluation set {dataset_name!r}: {len(unlabelled)} of its {len(dicts)} images have no label map "
            f"(sem_seg_file_name), e.g. {unlabelled[0]}; DATASETS.TEST needs sets with full labels"
        )
    if not meta.get("stuff_classes", None):
        raise ValueError(f"Evaluation set {dataset_name!r} has no stuff_classes metadata: not a semantic set")
    num_classes = len(meta.stuff_classes)
    allowed = sorted({255, meta.get("ignore_label", 255)})
    checked = _evenly_spaced(dicts, max_files)
    start = time.perf_counter()
    with ThreadPoolExecutor(NUM_THREADS) as pool:
        problems = [p for p in pool.map(lambda d: _label_map_problem(d, num_classes, allowed), checked) if p]
    if problems:
        listed = "\n  ".join(problems[:MAX_LISTED])
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise ValueError(
            f"Evaluation set {dataset_name!r}: {len(problems)} of the {len(checked)} label maps checked are "
            f"invalid (class ids 0..{num_classes - 1}, ignore {allowed}, the image's size):\n  {listed}{more}"
        )
    sample = (
        f"{len(checked)} of its {len(dicts)} label maps checked (an evenly spaced sample; "
        f"TEST.CHECK_LABELS_MAX_FILES {max_files})"
        if len(checked) < len(dicts)
        else f"all {len(dicts)} label maps checked"
    )
    logger.info(f"Evaluation labels of {dataset_name}: {sample} in {time.perf_counter() - start:.1f} s")
    return len(checked)


def check_evaluation_labels_from_config(cfg):
    """check_evaluation_labels of every DATASETS.TEST set; {name: files checked}, {} when off."""
    max_files = cfg.TEST.CHECK_LABELS_MAX_FILES
    if max_files <= 0:
        return {}
    return {name: check_evaluation_labels(name, max_files) for name in cfg.DATASETS.TEST}


def _reason_kind(reason, record):
    """The reason with this image's file names taken out, to count images per reason."""
    for key in ("sparse_sem_seg_file_name", "pseudo_sem_seg_file_name", "sem_seg_file_name"):
        if record.get(key):
            reason = reason.replace(record[key], "its label file")
    return reason


def check_not_all_empty(dataset_name, dicts, mapper):
    """
    Raise ValueError, naming the set, the image count and the reasons, when `mapper` (a
    WeakLabelDatasetMapper for training) finds the weak label of every dict empty. Examines the
    dicts in a fixed random order, in chunks of growing size, and stops at the first chunk
    with a usable image: a healthy set costs a few label reads, an all-empty one reads every
    label file once (its labels only, never its images). Returns the number of dicts examined.
    """
    order = np.random.RandomState(0).permutation(len(dicts))
    reasons = Counter()
    example = None
    examined, chunk = 0, FIRST_CHUNK
    with ThreadPoolExecutor(NUM_THREADS) as pool:
        while examined < len(dicts):
            records = [dicts[i] for i in order[examined : examined + chunk]]
            results = list(pool.map(mapper.empty_weak_label_reason, records))
            examined += len(records)
            if any(r is None for r in results):
                return examined
            for reason, record in zip(results, records):
                reasons[_reason_kind(reason, record)] += 1
            example = example or f"image {records[0]['file_name']}: {results[0]}"
            chunk *= 2
    counts = "; ".join(f"{n} with {reason}" for reason, n in reasons.most_common(MAX_LISTED))
    raise ValueError(
        f"Dataset {dataset_name!r}: all {len(dicts)} of its training images have an empty weak label, so "
        f"training would skip every one (INPUT.WEAK.ON_EMPTY): {counts}. E.g. {example}. Check the set's "
        f"weak-label files (or, for sparse labels, INPUT.SPARSE.UNLABELED_RAW / VOID_RAW)."
    )


def check_training_sets_not_all_empty(cfg, mapper):
    """
    check_not_all_empty of every DATASETS.TRAIN set with the training `mapper`; {name: dicts
    examined}. Mappers without `empty_weak_label_reason` (not wss_d2's) are not checked.
    """
    if not hasattr(mapper, "empty_weak_label_reason"):
        return {}
    return {name: check_not_all_empty(name, DatasetCatalog.get(name), mapper) for name in cfg.DATASETS.TRAIN}
