#!/usr/bin/env python
"""
Export pseudo labels: run a trained model (its segmentation, or its CAMs) over a split and
write one label PNG per image in the dataset's own format (raw class indices, 255 = ignore),
optionally refined by dense CRF (over all cores) and cut by a confidence threshold. It then
writes a config for the second stage, so fully supervised training on the pseudo labels is
one command:

    python tools/export_pseudo_labels.py --config-file configs/synthetic/deeplabv3plus_R18.yaml \\
        --dataset wss_synthetic_train --weights output/model_final.pth --output pseudo/ --crf
    python train_net.py --config-file pseudo/second_stage.yaml

Outputs in --output: <image_id>.png, pseudo_label_quality.json (mIoU of the pseudo labels
against the GT, when the source split has GT or --gt-dataset names one), second_stage.yaml
(_BASE_ = --second-stage-config, DATASETS.PSEUDO_LABELS registering the PNGs as --name,
DATASETS.TRAIN = (--name,)). Config options (TEST.TTA.*, TEST.CRF.*) follow the command.
"""
import argparse
import json
import logging
import os

import numpy as np

logger = logging.getLogger("wss_d2.export")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="config of the trained model")
    parser.add_argument("--dataset", required=True, help="registered split to label (its images are used)")
    parser.add_argument("--output", required=True, help="folder for <image_id>.png and second_stage.yaml")
    parser.add_argument("--weights", default="", help="checkpoint (default: MODEL.WEIGHTS)")
    parser.add_argument("--source", choices=["sem_seg", "cams"], default="sem_seg",
                        help="the model's segmentation scores, or its CAMs (outputs 'cams', 'cam_labels')")
    parser.add_argument("--bg-threshold", type=float, default=0.15,
                        help="--source cams: background score against the max-normalised CAMs")
    parser.add_argument("--restrict-to-tags", action="store_true",
                        help="keep only the image's tagged classes (and background) in the scores")
    parser.add_argument("--crf", action="store_true", help="refine with dense CRF (TEST.CRF.* parameters)")
    parser.add_argument("--ir-labels", action="store_true",
                        help="--source cams with a background channel (SIPE): confident-region labels "
                             "{0, class, 255} by dense CRF (TEST.IR_LABELS.*, sipe.md §7.1)")
    parser.add_argument("--save-cams", default="",
                        help="also write each image's CAMs (<image_id>.npy, SIPE/IRN format) to this folder")
    parser.add_argument("--threshold", type=float, default=0.0,
                        help="pixels whose top probability is below this become 255 (ignore)")
    parser.add_argument("--name", default="", help="registered name of the pseudo-label set (default <dataset>_pseudo_export)")
    parser.add_argument("--second-stage-config", default="", help="_BASE_ of second_stage.yaml (default: --config-file)")
    parser.add_argument("--gt-dataset", default="", help="split with the GT of the same images, for the quality report")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config KEY VALUE pairs")
    return parser.parse_args(argv)


def scores_to_probs(output, source, num_classes, bg_threshold, background_class):
    """(K, H, W) float32 probabilities from a model output."""
    import torch

    if source == "sem_seg":
        return torch.softmax(output["sem_seg"].float(), dim=0).cpu().numpy()
    if "cams" not in output:
        raise KeyError("--source cams: the model's outputs have no 'cams' (and 'cam_labels')")
    cams = output["cams"].float().cpu().numpy()
    labels = output["cam_labels"].cpu().numpy()
    scores = np.zeros((num_classes,) + cams.shape[1:], np.float32)
    scores[labels] = cams
    if background_class is not None and background_class not in labels.tolist():
        scores[background_class] = bg_threshold  # IRN's constant background score
    # a distribution per pixel, as the CRF's unary expects
    return scores / np.maximum(scores.sum(0, keepdims=True), 1e-8)


def argmax_with_threshold(probs, threshold, ignore):
    """uint8 argmax of (K, H, W) probabilities; pixels whose top probability is below `threshold` get `ignore`."""
    label = probs.argmax(0).astype(np.uint8)
    if threshold > 0:
        label[probs.max(0) < threshold] = ignore
    return label


def restrict_to_tags(probs, image_labels):
    present = np.asarray(image_labels).reshape(-1) > 0
    probs = probs * present[:, None, None]
    return probs / np.maximum(probs.sum(0, keepdims=True), 1e-8)


def root_dataset(name):
    """The dataset that a CAM or pseudo-label registration (metadata source_dataset) derives from."""
    from detectron2.data import MetadataCatalog

    seen = {name}
    while True:
        source = MetadataCatalog.get(name).get("source_dataset", None)
        if not source or source in seen:
            return name
        seen.add(source)
        name = source


def main(argv=None):
    args = parse_args(argv)
    import torch
    from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
    from detectron2.utils.logger import setup_logger

    from wss_d2 import get_wss_cfg
    from wss_d2.checkpoint import load_weights_strict
    from wss_d2.data import WeakLabelDatasetMapper, read_image, read_label_map
    from wss_d2.data.datasets import register_pseudo_labels_from_config
    from wss_d2.data.writers import write_label_png
    from wss_d2.engine import Trainer
    from wss_d2.evaluation import confusion_matrix, segmentation_metrics
    from wss_d2.data.weak_labels.cams import write_irn_cams
    from wss_d2.inference import DenseCRF, DenseCRFPool, maybe_wrap_with_tta
    from wss_d2.inference.ir_labels import combine_confident_regions, ir_label_jobs

    if args.ir_labels and (args.source != "cams" or args.crf):
        raise SystemExit("--ir-labels works on --source cams and runs its own CRF (no --crf)")

    setup_logger(name="wss_d2")
    cfg = get_wss_cfg(args.config_file, args.opts)
    register_pseudo_labels_from_config(cfg)
    if args.dataset not in DatasetCatalog.list():
        raise SystemExit(f"Unknown dataset {args.dataset!r}")
    meta = MetadataCatalog.get(args.dataset)
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    ignore = meta.get("ignore_label", 255)
    os.makedirs(args.output, exist_ok=True)

    model = Trainer.build_model(cfg)
    load_weights_strict(model, args.weights or cfg.MODEL.WEIGHTS)
    model.eval()
    model = maybe_wrap_with_tta(cfg, model)

    records = DatasetCatalog.get(args.dataset)
    gt_files = {r.get("image_id"): r["sem_seg_file_name"] for r in records if r.get("sem_seg_file_name")}
    if args.gt_dataset:
        gt_files = {r["image_id"]: r["sem_seg_file_name"] for r in DatasetCatalog.get(args.gt_dataset)}
    mapper = WeakLabelDatasetMapper(cfg, is_train=False, dataset_names=[args.dataset])
    loader = build_detection_test_loader(records, mapper=mapper, num_workers=cfg.DATALOADER.NUM_WORKERS)

    if args.save_cams:
        os.makedirs(args.save_cams, exist_ok=True)
    background = meta.get("background_class", 0)

    def predictions():
        """(image id, input, output) per image, produced lazily (bounded memory)."""
        with torch.no_grad():
            for inputs in loader:
                for input, output in zip(inputs, model(inputs)):
                    image_id = input.get("image_id") or os.path.splitext(os.path.basename(input["file_name"]))[0]
                    if args.save_cams:
                        if "cams" not in output:
                            raise KeyError("--save-cams: the model's outputs have no 'cams' (and 'cam_labels')")
                        write_irn_cams(os.path.join(args.save_cams, f"{image_id}.npy"),
                                       output["cam_labels"].cpu().numpy(), output["cams"].cpu().numpy(), background)
                    yield image_id, input, output

    def probabilities():
        """(image id, input, probabilities) per image."""
        for image_id, input, output in predictions():
            probs = scores_to_probs(output, args.source, num_classes, args.bg_threshold, background)
            if args.restrict_to_tags:
                if "image_labels" not in input:
                    raise KeyError(f"--restrict-to-tags: {input['file_name']} has no image tags")
                probs = restrict_to_tags(probs, input["image_labels"].numpy())
            yield image_id, input, probs

    def argmax_labels():
        """(image id, label map), after dense CRF on the worker pool with --crf."""
        if not args.crf:
            for image_id, _, probs in probabilities():
                yield image_id, argmax_with_threshold(probs, args.threshold, ignore)
            return
        with DenseCRFPool(cfg) as pool:
            for image_id, input, probs in probabilities():
                pool.submit(image_id, read_image(input["file_name"], "RGB"), probs)
                for key, refined in pool.results():
                    yield key, argmax_with_threshold(refined, args.threshold, ignore)
            for key, refined in pool.drain():
                yield key, argmax_with_threshold(refined, args.threshold, ignore)

    def confident_regions():
        """(image id, {0, class, 255} label map): two label CRFs per image on the pool (§7.1)."""
        node = cfg.TEST.IR_LABELS
        keys, halves = {}, {}
        with DenseCRFPool(DenseCRF(cfg, node="TEST.IR_LABELS"), num_workers=cfg.TEST.CRF.NUM_WORKERS,
                          max_pending=cfg.TEST.CRF.MAX_PENDING) as pool:

            def collect(results):
                for (image_id, half), refined in results:
                    halves.setdefault(image_id, {})[half] = refined
                    if len(halves[image_id]) == 2:
                        done = halves.pop(image_id)
                        yield image_id, combine_confident_regions(
                            done["fg"], done["bg"], keys.pop(image_id), ignore_label=ignore,
                            keep_uncertain=node.KEEP_UNCERTAIN, background_class=background)

            for image_id, input, output in predictions():
                labels = output["cam_labels"].cpu().numpy()
                image = read_image(input["file_name"], "RGB")
                fg, bg = ir_label_jobs(image, output["cams"].float().cpu().numpy(), labels,
                                       background_class=background, bg_scale=node.BG_SCALE, gt_prob=node.GT_PROB)
                keys[image_id] = labels
                pool.submit_job((image_id, "fg"), fg)
                pool.submit_job((image_id, "bg"), bg)
                yield from collect(pool.results())
            yield from collect(pool.drain())

    confusion = np.zeros((num_classes, num_classes), np.int64)
    # ignored pseudo-label pixels counted as background (SIPE's "+DenseCRF" protocol, §7.1)
    confusion_as_background = np.zeros((num_classes, num_classes), np.int64)
    labelled = [0, 0]  # GT-valid pixels that the pseudo labels label, GT-valid pixels
    written = 0
    for image_id, label in (confident_regions() if args.ir_labels else argmax_labels()):
        write_label_png(label, os.path.join(args.output, f"{image_id}.png"))
        written += 1
        if image_id in gt_files:
            gt = read_label_map(gt_files[image_id])
            valid = (gt != ignore) & (label != ignore)
            labelled[0] += int(valid.sum())
            labelled[1] += int((gt != ignore).sum())
            confusion += confusion_matrix(gt[valid], label[valid], num_classes)
            if background is not None:
                filled = np.where(label == ignore, background, label)
                confusion_as_background += confusion_matrix(gt[gt != ignore], filled[gt != ignore], num_classes)

    report = {"images": written, "output": os.path.abspath(args.output), "crf": args.crf,
              "ir_labels": args.ir_labels, "threshold": args.threshold}
    if confusion.sum():
        metrics = segmentation_metrics(confusion, meta.stuff_classes)
        # measured on the pixels the pseudo labels label (the ignored ones are reported as coverage)
        report.update(mIoU=metrics["mIoU"], pACC=metrics["pACC"], coverage=100 * labelled[0] / max(labelled[1], 1))
    if confusion_as_background.sum():
        report["mIoU_ignore_as_background"] = segmentation_metrics(confusion_as_background, meta.stuff_classes)["mIoU"]
    with open(os.path.join(args.output, "pseudo_label_quality.json"), "w") as f:
        json.dump(report, f, indent=2)

    name = args.name or f"{args.dataset}_pseudo_export"
    # the second stage runs in a fresh process: name the built-in split, not a CAM or
    # pseudo-label registration of this run's command line (it would not exist there)
    source = root_dataset(args.dataset)
    base = os.path.abspath(args.second_stage_config or args.config_file)
    second_stage = os.path.join(args.output, "second_stage.yaml")
    with open(second_stage, "w") as f:
        f.write(
            f'_BASE_: "{base}"\n'
            "DATASETS:\n"
            f'  PSEUDO_LABELS: [["{name}", "{source}", "{os.path.abspath(args.output)}"]]\n'
            f'  TRAIN: ("{name}",)\n'
        )
    logger.info(
        f"Wrote {written} pseudo labels to {args.output}"
        + (f" (mIoU against the GT {report['mIoU']:.2f})" if "mIoU" in report else "")
        + f"; second stage: python train_net.py --config-file {second_stage}"
    )
    return report


if __name__ == "__main__":
    main()
