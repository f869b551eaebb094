"""
Quality of class activation maps ("localisation mIoU"): how well CAMs, turned into a label
map, match the ground truth on a (train) split. Used by the CAM methods (SIPE, MCC) through
detectron2's evaluator interface (`inference_on_dataset`, `EvalHook`).

Input. `process(inputs, outputs)` takes, per image, `inputs["sem_seg_file_name"]` (the GT PNG,
raw label values) and optionally `inputs["image_labels"]` (label values of the classes present,
or the mapper's (K,) float multi-hot), and `outputs["cams"]` (C, H, W) maps at GT resolution,
max-normalised to [0, 1], with `outputs["cam_labels"]` (C,) their label values. Two kinds:
  * foreground CAMs (IRN style): one map per present foreground class;
  * maps with a background channel (SIPE's IS-CAM): `cam_labels[0]` is the dataset's
    background class (0), the present classes follow.
With `image_labels`, channels of classes absent from the image are dropped first (the
protocols take the argmax over {background, the image's classes} only).

Modes, all accumulated in one pass (one confusion matrix per setting, rows = GT, columns =
prediction, pixels whose GT is the ignore label excluded):
  * "argmax" (SIPE's official protocol, docs/sipe.md §6.1): label = cam_labels[argmax over the
    channels], no threshold. Needs a background channel; with foreground CAMs it is skipped
    (a constant background score is what the sweep is for) and "mIoU" is not reported.
  * "sweep" (IRN's `eval_cam.py`, the CAM baselines of SIPE's ablation, MCC's `bkg_thre`):
    label = argmax over [τ, M_c for the present c] for every τ of a grid (default 0.00..0.95,
    step 0.01); a background channel, if any, is replaced by τ. Reports the best τ and its
    mIoU, and the mIoU at τ = 0.15 (IRN's default `cam_eval_thres`), always evaluated.
  * "bg multiplier" (optional, maps with a background channel): the background channel times
    β, then argmax, for each β of a list (β = 1 is the argmax mode; SIPE's CRF step uses 0.5).
Ties follow numpy/torch argmax (first index) with the background in front: the background wins
an exact tie, i.e. a pixel whose best foreground score equals τ is background. Scores and
thresholds are compared in float32, as IRN pads its float32 maps with τ.

The sweep keeps, per (GT class, best foreground class), a histogram over "how many thresholds
lie below the pixel's best foreground score"; cumulative sums of it give every threshold's
confusion matrix exactly, so the per-pixel work does not grow with the number of thresholds.

Metrics (in %): IoU_c = TP / (TP + FP + FN), precision_c = TP / (TP + FP), recall_c =
TP / (TP + FN); a class absent from both GT and prediction has no IoU (NaN) and is skipped by
the mean (docs/sipe.md §6.1), a class predicted but absent from the GT counts as 0. The per-class
keys describe the headline setting: the argmax mode when the maps have a background
channel, else the best threshold.
"""
import logging
import os
from collections import OrderedDict

import numpy as np
import torch
from tabulate import tabulate

from detectron2.config import configurable
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager

from ..data.readers import check_label_values, read_label_map
from ..utils import write_json
from .sem_seg_evaluation import confusion_matrix

__all__ = ["CAMEvaluator", "threshold_grid", "per_class_scores"]

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLDS = (0.0, 0.95, 0.01)  # start, stop (inclusive), step
IRN_THRESHOLD = 0.15  # IRN's default cam_eval_thres, always reported


def threshold_grid(start, stop, step):
    """The thresholds start, start + step, ..., up to stop inclusive, rounded to 10 decimals
    so that e.g. 0.3 is the float 0.3 and not 0.30000000000000004."""
    if not (np.isfinite([start, stop, step]).all() and step > 0 and stop >= start):
        raise ValueError(
            f"CAM thresholds (TEST.CAM_EVAL.THRESHOLDS) must be [start, stop, step] with step > 0 "
            f"and stop >= start; got {[start, stop, step]}"
        )
    count = int(np.floor((stop - start) / step + 1e-6)) + 1
    return np.round(start + step * np.arange(count), 10)


def per_class_scores(confusion):
    """
    IoU, precision and recall per class (fractions, NaN where undefined) from confusion
    matrices of shape (..., K, K), rows = GT, columns = prediction.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    gt = confusion.sum(-1)
    pred = confusion.sum(-2)
    union = gt + pred - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        precision = np.where(pred > 0, tp / pred, np.nan)
        recall = np.where(gt > 0, tp / gt, np.nan)
    return iou, precision, recall


def _nanmean(values):
    """Mean over the last axis ignoring NaN; NaN where every entry is NaN (no warning)."""
    values = np.asarray(values, dtype=np.float64)
    defined = np.isfinite(values)
    count = defined.sum(-1)
    total = np.where(defined, values, 0.0).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


class CAMEvaluator(DatasetEvaluator):
    """
    Localisation mIoU of CAMs against the GT of each image, in the argmax, threshold-sweep and
    background-multiplier modes of the module docstring. `evaluate()` gathers the confusion
    matrices across processes and returns {"cam": metrics} on the main process (None on the
    others), with the sweep table in the log and, with `output_dir`, the matrices and the
    whole sweep curve saved there.

    Built from the config as `CAMEvaluator(cfg, dataset_name)` (TEST.CAM_EVAL.*), or with
    explicit arguments.
    """

    @configurable
    def __init__(
        self,
        dataset_name,
        distributed=True,
        output_dir=None,
        *,
        thresholds=DEFAULT_THRESHOLDS,
        bg_multipliers=(),
        irn_threshold=IRN_THRESHOLD,
    ):
        """
        Args:
            dataset_name: a registered dataset with stuff_classes, ignore_label and a
                background_class, whose images all have a sem_seg_file_name.
            thresholds: (start, stop, step) of the background-threshold sweep, stop inclusive.
            bg_multipliers: factors β for the background channel; empty = mode off.
            irn_threshold: a threshold always evaluated and reported as "mIoU@<value>".
        """
        meta = MetadataCatalog.get(dataset_name)
        self.dataset_name = dataset_name
        self.class_names = list(meta.stuff_classes)
        self.num_classes = len(self.class_names)
        self.ignore_label = meta.get("ignore_label", 255)
        self.background_class = meta.get("background_class", 0)
        if self.background_class is None or not 0 <= self.background_class < self.num_classes:
            raise ValueError(
                f"CAM evaluation on {dataset_name} needs a background class (metadata background_class "
                f"in 0..{self.num_classes - 1}); it has background_class={self.background_class}"
            )
        unlabelled = [d["file_name"] for d in DatasetCatalog.get(dataset_name) if not d.get("sem_seg_file_name")]
        if unlabelled:
            raise ValueError(
                f"Cannot evaluate CAMs on {dataset_name}: {len(unlabelled)} of its images have no label "
                f"map (sem_seg_file_name), e.g. {unlabelled[0]}. Evaluate on a split with full labels."
            )
        if len(thresholds) != 3:
            raise ValueError(f"CAM thresholds (TEST.CAM_EVAL.THRESHOLDS) must be [start, stop, step]; got {thresholds}")
        self.irn_threshold = float(irn_threshold)
        grid = np.append(threshold_grid(*(float(v) for v in thresholds)), self.irn_threshold)
        self.thresholds = np.unique(np.round(grid, 10))
        self.bg_multipliers = np.asarray(list(bg_multipliers), dtype=np.float64).reshape(-1)
        if not (np.isfinite(self.bg_multipliers).all() and (self.bg_multipliers > 0).all()):
            raise ValueError(
                f"Background multipliers (TEST.CAM_EVAL.BG_MULTIPLIERS) must be positive numbers; "
                f"got {list(bg_multipliers)}"
            )
        self.distributed = distributed
        self.output_dir = output_dir
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name, distributed=True, output_dir=None):
        return {
            "dataset_name": dataset_name,
            "distributed": distributed,
            "output_dir": output_dir,
            "thresholds": tuple(cfg.TEST.CAM_EVAL.THRESHOLDS),
            "bg_multipliers": tuple(cfg.TEST.CAM_EVAL.BG_MULTIPLIERS),
            "irn_threshold": cfg.TEST.CAM_EVAL.IRN_THRESHOLD,
        }

    def reset(self):
        K, T, B = self.num_classes, len(self.thresholds), len(self.bg_multipliers)
        self._argmax = np.zeros((K, K), dtype=np.int64)
        # [gt, best foreground class, number of thresholds below the best foreground score]
        self._sweep_histogram = np.zeros((K, K, T + 1), dtype=np.int64)
        self._multiplier = np.zeros((B, K, K), dtype=np.int64)
        self._images_with_background = 0
        self._images_without_background = 0

    # ------------------------------------------------------------------ accumulation

    def process(self, inputs, outputs):
        for input, output in zip(inputs, outputs):
            self._process_one(input, output)

    def _process_one(self, input, output):
        K, bg = self.num_classes, self.background_class
        label_file = input.get("sem_seg_file_name")
        file_name = input.get("file_name", label_file)
        if not label_file:
            raise ValueError(f"Cannot evaluate the CAMs of {file_name}: the input has no sem_seg_file_name")
        if "cams" not in output or "cam_labels" not in output:
            raise ValueError(
                f"CAM evaluation of {file_name}: the model output has keys {sorted(output)}, "
                "expected 'cams' (C, H, W) and 'cam_labels' (C,)"
            )
        maps = torch.as_tensor(output["cams"])
        labels = torch.as_tensor(output["cam_labels"]).to("cpu").numpy()
        gt = read_label_map(label_file)
        self._check(maps, labels, gt, file_name, label_file)
        check_label_values(gt, K, self.ignore_label, label_file)
        maps, labels = self._keep_present(maps, labels, input.get("image_labels"), file_name)

        has_background = len(labels) > 0 and labels[0] == bg
        self._count_kind(has_background, file_name)

        valid = gt != self.ignore_label
        gt_valid = gt[valid].astype(np.int64)
        scores = maps.float()[:, torch.from_numpy(valid).to(maps.device)]  # (C, N)
        foreground = scores[1:] if has_background else scores
        foreground_labels = torch.as_tensor(labels[1:] if has_background else labels, device=maps.device)
        if len(foreground_labels):
            best, best_channel = foreground.max(dim=0)  # first channel on ties, as argmax
            best_class = foreground_labels[best_channel]
        else:  # only a background map: every pixel is background
            best = torch.full((scores.shape[1],), -float("inf"), device=maps.device)
            best_class = torch.full((scores.shape[1],), bg, dtype=torch.int64, device=maps.device)

        # sweep: a pixel is foreground at τ_t iff τ_t < best (τ wins ties), i.e. for t < below
        thresholds = torch.as_tensor(self.thresholds, dtype=torch.float32, device=maps.device)
        below = torch.searchsorted(thresholds, best.contiguous(), right=False).cpu().numpy()
        best_class_np = best_class.cpu().numpy()
        T1 = len(self.thresholds) + 1
        self._sweep_histogram += np.bincount(
            (gt_valid * K + best_class_np) * T1 + below, minlength=K * K * T1
        ).reshape(K, K, T1)

        if has_background:
            background = scores[0]
            self._argmax += self._confusion(gt_valid, torch.where(background >= best, bg, best_class))
            for i, beta in enumerate(self.bg_multipliers):
                scaled = background * float(beta)  # float32, as the maps
                self._multiplier[i] += self._confusion(gt_valid, torch.where(scaled >= best, bg, best_class))

    def _confusion(self, gt, pred):
        return confusion_matrix(gt, pred.cpu().numpy(), self.num_classes)

    def _check(self, maps, labels, gt, file_name, label_file):
        K = self.num_classes
        if maps.dim() != 3 or labels.ndim != 1 or labels.shape[0] != maps.shape[0]:
            raise ValueError(
                f"CAMs of {file_name} have shape {tuple(maps.shape)} and cam_labels shape {labels.shape}; "
                "expected (C, H, W) maps and C label values"
            )
        if tuple(maps.shape[1:]) != gt.shape:
            raise ValueError(
                f"CAMs of {file_name} have shape {tuple(maps.shape)} (C, H, W) but its label map "
                f"{label_file} has shape {gt.shape} (H, W); give the maps at GT resolution"
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"CAMs of {file_name}: cam_labels {labels.tolist()} are not integer label values")
        if ((labels < 0) | (labels >= K)).any():
            raise ValueError(
                f"CAMs of {file_name}: cam_labels {labels.tolist()} outside the class ids 0..{K - 1}"
            )
        if len(np.unique(labels)) != len(labels):
            raise ValueError(f"CAMs of {file_name}: cam_labels {labels.tolist()} repeat a class")
        if self.background_class in labels[1:]:
            raise ValueError(
                f"CAMs of {file_name}: the background class {self.background_class} must be the first "
                f"entry of cam_labels, got {labels.tolist()}"
            )
        if not torch.isfinite(maps).all():
            raise ValueError(f"CAMs of {file_name} contain NaN or infinite values")

    def _keep_present(self, maps, labels, image_labels, file_name):
        """Drop the channels of classes not in `image_labels` (the background is kept)."""
        if image_labels is None:
            return maps, labels
        K = self.num_classes
        tags = torch.as_tensor(image_labels).to("cpu").reshape(-1)
        if tags.is_floating_point() and tags.numel() > 0:  # the mapper's (K,) multi-hot
            if tags.numel() != K:
                raise ValueError(
                    f"image_labels of {file_name}: a float multi-hot of length {tags.numel()}, expected {K}"
                )
            present = torch.nonzero(tags > 0).reshape(-1).numpy()
        else:  # label values
            present = tags.long().numpy()
            if ((present < 0) | (present >= K)).any():
                raise ValueError(f"image_labels of {file_name}: {present.tolist()} outside the class ids 0..{K - 1}")
        keep = np.isin(labels, present) | (labels == self.background_class)
        if keep.all():
            return maps, labels
        return maps[torch.from_numpy(np.nonzero(keep)[0]).to(maps.device)], labels[keep]

    def _count_kind(self, has_background, file_name):
        if has_background:
            self._images_with_background += 1
        else:
            self._images_without_background += 1
        if self._images_with_background and self._images_without_background:
            raise ValueError(
                f"CAMs of {file_name} {'have' if has_background else 'have no'} background channel "
                f"(cam_labels[0] = {self.background_class}) but earlier images' maps "
                f"{'had none' if has_background else 'had one'}; a model must output one kind"
            )

    # ------------------------------------------------------------------ results

    def _state(self):
        return {
            "argmax": self._argmax,
            "sweep_histogram": self._sweep_histogram,
            "multiplier": self._multiplier,
            "with_background": self._images_with_background,
            "without_background": self._images_without_background,
        }

    def confusion_matrices(self, state=None):
        """
        The confusion matrices of every setting from this process's accumulators (or from a
        gathered `state`): {"argmax": (K, K) or None without a background channel,
        "sweep": (T, K, K) for `self.thresholds`, "bg_multiplier": (B, K, K) or None}.
        """
        state = self._state() if state is None else state
        if state["with_background"] and state["without_background"]:
            raise ValueError(
                f"CAM evaluation on {self.dataset_name}: {state['with_background']} images had maps with a "
                f"background channel and {state['without_background']} without; a model must output one kind"
            )
        histogram = state["sweep_histogram"]  # (K, K, T + 1)
        T = histogram.shape[-1] - 1
        # foreground prediction at τ_t: pixels with more than t thresholds below their best score
        at_or_above = np.flip(np.cumsum(np.flip(histogram, -1), -1), -1)  # [..., n] = sum over m >= n
        sweep = np.moveaxis(at_or_above[..., 1:], -1, 0).copy()  # (T, K, K)
        # background prediction at τ_t: pixels with at most t thresholds below, whatever their class
        background = np.cumsum(histogram.sum(1), -1)[:, :T]  # (K gt, T)
        sweep[:, :, self.background_class] += background.T
        has_background = state["with_background"] > 0
        return {
            "argmax": state["argmax"] if has_background else None,
            "sweep": sweep,
            "bg_multiplier": state["multiplier"] if has_background and len(self.bg_multipliers) else None,
        }

    def evaluate(self):
        state = self._state()
        if self.distributed:
            comm.synchronize()
            gathered = comm.gather(state, dst=0)
            if not comm.is_main_process():
                return None
            state = {key: sum(s[key] for s in gathered) for key in state}
        if state["with_background"] + state["without_background"] == 0:
            logger.warning(f"{self.dataset_name}: no image was given to the CAM evaluator")
        confusions = self.confusion_matrices(state)
        results, curves = self._metrics(confusions)
        self._log(results, curves)
        if self.output_dir:
            PathManager.mkdirs(self.output_dir)
            arrays = {key: value for key, value in confusions.items() if value is not None}
            with PathManager.open(os.path.join(self.output_dir, "cam_confusion.npz"), "wb") as f:
                np.savez(f, thresholds=self.thresholds, bg_multipliers=self.bg_multipliers, **arrays)
            write_json(os.path.join(self.output_dir, "cam_evaluation.json"), {"results": results, **curves})
        return OrderedDict(cam=results)

    def _metrics(self, confusions):
        """Flat {name: float} results (%), and the sweep / multiplier curves."""
        results = OrderedDict()
        sweep_iou, sweep_precision, sweep_recall = per_class_scores(confusions["sweep"])
        sweep_miou = 100 * _nanmean(sweep_iou)
        curves = {
            "thresholds": self.thresholds.tolist(),
            "sweep_mIoU": sweep_miou.tolist(),
            "sweep_mPrecision": (100 * _nanmean(sweep_precision)).tolist(),
            "sweep_mRecall": (100 * _nanmean(sweep_recall)).tolist(),
        }
        best = int(np.nanargmax(sweep_miou)) if np.isfinite(sweep_miou).any() else 0
        headline = confusions["argmax"] if confusions["argmax"] is not None else confusions["sweep"][best]
        if confusions["argmax"] is not None:
            results["mIoU"] = float(100 * _nanmean(per_class_scores(confusions["argmax"])[0]))
        results["best_threshold"] = float(self.thresholds[best])
        results["mIoU@best"] = float(sweep_miou[best])
        irn = int(np.argmin(np.abs(self.thresholds - self.irn_threshold)))
        results[f"mIoU@{self.irn_threshold:g}"] = float(sweep_miou[irn])
        if confusions["bg_multiplier"] is not None:
            multiplier_miou = 100 * _nanmean(per_class_scores(confusions["bg_multiplier"])[0])
            curves["bg_multipliers"] = self.bg_multipliers.tolist()
            curves["bg_multiplier_mIoU"] = multiplier_miou.tolist()
            best_beta = int(np.nanargmax(multiplier_miou)) if np.isfinite(multiplier_miou).any() else 0
            results["best_bg_multiplier"] = float(self.bg_multipliers[best_beta])
            results["mIoU@best_bg_multiplier"] = float(multiplier_miou[best_beta])
        iou, precision, recall = per_class_scores(headline)
        for kind, values in (("IoU", iou), ("Precision", precision), ("Recall", recall)):
            for name, value in zip(self.class_names, values):
                results[f"{kind}-{name}"] = float(100 * value)
        return results, curves

    def _log(self, results, curves):
        thresholds = np.asarray(curves["thresholds"])
        notes = [(results["best_threshold"], "best"), (self.irn_threshold, "IRN default")]

        def note(t):
            return ", ".join(text for value, text in notes if abs(t - value) < 1e-9)

        shown = [i for i, t in enumerate(thresholds) if abs(t * 20 - round(t * 20)) < 1e-6 or note(t)]
        rows = [
            [thresholds[i], curves["sweep_mIoU"][i], curves["sweep_mPrecision"][i], curves["sweep_mRecall"][i],
             note(thresholds[i])]
            for i in shown
        ]
        text = f"CAM evaluation on {self.dataset_name}, background-threshold sweep:\n"
        text += tabulate(rows, headers=["τ", "mIoU", "mPrecision", "mRecall", ""], floatfmt=".2f", tablefmt="pipe")
        if "bg_multiplier_mIoU" in curves:
            rows = list(zip(curves["bg_multipliers"], curves["bg_multiplier_mIoU"]))
            text += "\nbackground multiplier β (maps' background channel × β, then argmax):\n"
            text += tabulate(rows, headers=["β", "mIoU"], floatfmt=".2f", tablefmt="pipe")
        setting = "argmax" if "mIoU" in results else f"τ = {results['best_threshold']:g}"
        rows = [
            [i, name, results[f"IoU-{name}"], results[f"Precision-{name}"], results[f"Recall-{name}"]]
            for i, name in enumerate(self.class_names)
        ]
        text += f"\nper class ({setting}):\n"
        text += tabulate(rows, headers=["id", "class", "IoU", "Precision", "Recall"], floatfmt=".2f", tablefmt="pipe")
        summary = [f"argmax mIoU {results['mIoU']:.2f}"] if "mIoU" in results else ["argmax: no background channel"]
        summary.append(f"best τ {results['best_threshold']:g}: mIoU {results['mIoU@best']:.2f}")
        summary.append(f"τ {self.irn_threshold:g}: mIoU {results[f'mIoU@{self.irn_threshold:g}']:.2f}")
        if "best_bg_multiplier" in results:
            summary.append(f"best β {results['best_bg_multiplier']:g}: mIoU {results['mIoU@best_bg_multiplier']:.2f}")
        logger.info(text + "\n" + ", ".join(summary))
