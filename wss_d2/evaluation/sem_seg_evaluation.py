"""
Semantic-segmentation metrics through detectron2's evaluator interface: per-class IoU and
accuracy, mIoU, fwIoU, mACC, pACC, and for weak-shot datasets base / novel mIoU and their
harmonic mean.

Conventions (those of detectron2's SemSegEvaluator, torchmetrics' macro JaccardIndex and
SimFormer's WeakShotSemSegEvaluator, which all agree):
  * pixels whose GT is the ignore label (255) are excluded;
  * IoU_c = TP / (TP + FP + FN); a class absent from both GT and prediction has no IoU (NaN)
    and is left out of every mean, while a class predicted but absent from the GT has IoU 0
    and counts in mIoU (SimFormer's "denominator rule": mIoU divides by the classes with
    GT + prediction > 0);
  * base and novel mIoU are plain means over the base (novel) classes present in the GT
    (GT_c > 0), as SimFormer's evaluator computes them; hIoU = 2·base·novel / (base + novel)
    (SimFormer's code does not report it; its paper does).
"""
import logging
import os
from collections import OrderedDict

import numpy as np
from tabulate import tabulate

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager

from ..data.readers import read_image, read_label_map
from ..data.writers import label_palette, write_label_png
from ..inference.scores import output_sem_seg_kind, to_probabilities
from ..utils import write_json

__all__ = ["WSSSemSegEvaluator", "confusion_matrix", "segmentation_metrics"]

logger = logging.getLogger(__name__)


def confusion_matrix(gt, pred, num_classes):
    """(K, K) counts of (GT row, prediction column) over paired label arrays of values 0..K-1
    (the caller leaves out ignored pixels)."""
    gt = np.asarray(gt, dtype=np.int64).reshape(-1)
    pred = np.asarray(pred, dtype=np.int64).reshape(-1)
    return np.bincount(num_classes * gt + pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def segmentation_metrics(confusion, class_names, base_classes=None, novel_classes=None):
    """
    Metrics (in %) from a (K, K) confusion matrix, rows = GT, columns = prediction, over
    non-ignored pixels. Returns an OrderedDict: mIoU, fwIoU, mACC, pACC, IoU-<name>,
    ACC-<name>, and with base/novel classes mIoU-base, mIoU-novel, hIoU, mACC-base, mACC-novel.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    gt = confusion.sum(1)
    pred = confusion.sum(0)
    union = gt + pred - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt > 0, tp / gt, np.nan)
    total = gt.sum()
    results = OrderedDict()
    results["mIoU"] = 100 * _nanmean(iou)
    results["fwIoU"] = 100 * float(np.nansum(np.where(gt > 0, iou, 0) * gt) / total) if total else float("nan")
    results["mACC"] = 100 * _nanmean(acc)
    results["pACC"] = 100 * float(tp.sum() / total) if total else float("nan")
    for name, value in zip(class_names, iou):
        results[f"IoU-{name}"] = 100 * value
    for name, value in zip(class_names, acc):
        results[f"ACC-{name}"] = 100 * value
    if base_classes is not None and novel_classes is not None:
        present = gt > 0
        for group, ids in (("base", base_classes), ("novel", novel_classes)):
            ids = np.asarray(ids, dtype=np.int64)
            ids = ids[present[ids]]
            results[f"mIoU-{group}"] = 100 * _nanmean(iou[ids])
            results[f"mACC-{group}"] = 100 * _nanmean(acc[ids])
        base, novel = results["mIoU-base"], results["mIoU-novel"]
        results["hIoU"] = 2 * base * novel / (base + novel) if base + novel > 0 else float("nan")
    return results


def _nanmean(values):
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


class WSSSemSegEvaluator(DatasetEvaluator):
    """
    Accumulates a confusion matrix of argmax(outputs["sem_seg"]) against the GT PNG of each
    input (raw label values, read without mode conversion), gathers it across processes
    and reports `segmentation_metrics` under the "sem_seg" key, with a per-class table in
    the log and the confusion matrix saved to `output_dir`.

    With `crf` (a callable returning a `wss_d2.inference.DenseCRFPool`), predictions are
    refined by dense CRF first: each image's probabilities (`to_probabilities` of its
    `sem_seg` by the kind the output declares in "sem_seg_kind"; none declared: detectron2's
    logits, wss_d2.inference.scores) are submitted to the pool and
    scored when the pool returns them, so the CRF of earlier images runs on other cores while
    the model predicts the next one (at most the pool's max_pending images are held). The
    pool lives from `reset` to the end of `evaluate`.
    """

    def __init__(self, dataset_name, distributed=True, output_dir=None, *, num_classes=None, ignore_label=None,
                 crf=None, save_predictions=False):
        meta = MetadataCatalog.get(dataset_name)
        self.dataset_name = dataset_name
        self.class_names = list(meta.stuff_classes)
        self.num_classes = num_classes or len(self.class_names)
        if self.num_classes != len(self.class_names):
            raise ValueError(
                f"Evaluator for {dataset_name}: num_classes={self.num_classes} but the dataset has "
                f"{len(self.class_names)} classes"
            )
        self.ignore_label = meta.get("ignore_label", 255) if ignore_label is None else ignore_label
        self.base_classes = meta.get("base_classes", None)
        self.novel_classes = meta.get("novel_classes", None)
        self.distributed = distributed
        self.output_dir = output_dir
        self._make_crf_pool = crf
        self.crf = None
        # TEST.SAVE_PREDICTIONS: <output_dir>/predictions/<image_id>.png, raw class ids in the dataset's colours
        self.save_predictions = bool(save_predictions) and output_dir is not None
        self._palette = label_palette(meta.get("stuff_colors", None), self.ignore_label) if self.save_predictions else None
        if self.save_predictions:
            os.makedirs(os.path.join(output_dir, "predictions"), exist_ok=True)
        unlabelled = [d["file_name"] for d in DatasetCatalog.get(dataset_name) if not d.get("sem_seg_file_name")]
        if unlabelled:
            raise ValueError(
                f"Cannot evaluate on {dataset_name}: {len(unlabelled)} of its images have no label "
                f"map (sem_seg_file_name), e.g. {unlabelled[0]}. Evaluate on a split with full labels."
            )
        self.reset()

    def reset(self):
        self._confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self._close_crf()
        if self._make_crf_pool is not None:
            self.crf = self._make_crf_pool()

    def _close_crf(self):
        if self.crf is not None:
            self.crf.close()
            self.crf = None

    def process(self, inputs, outputs):
        K = self.num_classes
        for input, output in zip(inputs, outputs):
            label_file = input.get("sem_seg_file_name")
            if label_file is None:
                raise ValueError(f"Cannot evaluate {input.get('file_name')}: the input has no sem_seg_file_name")
            scores = output["sem_seg"]
            if scores.dim() != 3 or scores.shape[0] != K:
                raise ValueError(
                    f"{input.get('file_name')}: prediction of shape {tuple(scores.shape)}, expected ({K}, H, W)"
                )
            # argmax is the same for every kind; the CRF needs probabilities
            kind = output_sem_seg_kind(output, where=str(input.get("file_name", "?")))
            if self.crf is None:
                self._score(input, scores.argmax(dim=0).to("cpu").numpy())
                continue
            image = read_image(input["file_name"], "RGB")
            self.crf.submit(input, image, to_probabilities(scores.detach().cpu(), kind).numpy())
            for done, probs in self.crf.results():
                self._score(done, probs.argmax(0))

    def _score(self, input, pred):
        K = self.num_classes
        if self.save_predictions:
            name = str(input.get("image_id", os.path.splitext(os.path.basename(input["file_name"]))[0]))
            write_label_png(np.asarray(pred, dtype=np.uint8), os.path.join(self.output_dir, "predictions", name + ".png"),
                            palette=self._palette)
        label_file = input["sem_seg_file_name"]
        gt = read_label_map(label_file)
        if gt.shape != pred.shape:
            raise ValueError(
                f"Prediction for {input.get('file_name')} is {pred.shape[1]}x{pred.shape[0]} (WxH) but "
                f"its label map {label_file} is {gt.shape[1]}x{gt.shape[0]}"
            )
        valid = gt != self.ignore_label
        if (gt[valid] >= K).any():
            raise ValueError(
                f"Label map {label_file} has values {np.unique(gt[valid & (gt >= K)])[:10].tolist()} "
                f"outside the class ids 0..{K - 1} and the ignore label {self.ignore_label}"
            )
        self._confusion += confusion_matrix(gt[valid], pred[valid], K)

    def evaluate(self):
        if self.crf is not None:
            for done, probs in self.crf.drain():
                self._score(done, probs.argmax(0))
            self._close_crf()
        confusion = self._confusion
        if self.distributed:
            comm.synchronize()
            gathered = comm.gather(self._confusion, dst=0)
            if not comm.is_main_process():
                return None
            confusion = np.sum(gathered, axis=0)
        if confusion.sum() == 0:
            logger.warning(f"{self.dataset_name}: no labelled pixel was evaluated")
        results = segmentation_metrics(confusion, self.class_names, self.base_classes, self.novel_classes)
        self._log_table(results)
        if self.output_dir:
            PathManager.mkdirs(self.output_dir)
            np.save(os.path.join(self.output_dir, "sem_seg_confusion.npy"), confusion)
            write_json(os.path.join(self.output_dir, "sem_seg_evaluation.json"), results)  # NaN IoU as null
        return OrderedDict(sem_seg=results)

    def _log_table(self, results):
        novel = set(self.novel_classes or ())
        rows = [
            [i, name, "novel" if i in novel else ("base" if self.novel_classes is not None else ""),
             results[f"IoU-{name}"], results[f"ACC-{name}"]]
            for i, name in enumerate(self.class_names)
        ]
        table = tabulate(rows, headers=["id", "class", "split", "IoU", "ACC"], floatfmt=".2f", tablefmt="pipe")
        summary_keys = [k for k in ("mIoU", "fwIoU", "mACC", "pACC", "mIoU-base", "mIoU-novel", "hIoU") if k in results]
        summary = ", ".join(f"{k} {results[k]:.2f}" for k in summary_keys)
        logger.info(f"Semantic segmentation on {self.dataset_name}:\n{table}\n{summary}")

