#!/usr/bin/env python
"""
SIPE's whole pipeline (docs/sipe.md §0) in one command, with the comparison table of
README "Results": by default on the bundled synthetic data, sized for a CPU.

    python tools/run_sipe_pipeline.py --output output/sipe_pipeline

Stages (each a subprocess running train_net.py or tools/export_pseudo_labels.py):
  0  with --pretrain-config (synthetic: there are no ImageNet weights offline), a tag
     classifier trained from scratch whose weights SIPE and the CAM start from
  A  train SIPE on tags and, with the same start, network and budget, a plain CAM; each is evaluated
     on the training images (localisation mIoU: SIPE by the argmax protocol, CAM by its best
     background threshold)
  B  SIPE's IS-CAMs of the tag split (saved for IRN) and their confident-region labels by
     dense CRF (docs/sipe.md §7.1)
  C  IRN's boundary branch trained on those labels, then random walk of the IS-CAMs (docs/sipe.md §7.2)
  D  the supervised model trained on the random-walk labels (second stage, docs/sipe.md §8) and, unless
     --baseline-results is given, the same model on the GT (the fully supervised baseline)
Writes <output>/results.json and <output>/results.md; a stage whose output exists is reused
(delete the folder to rerun it).
"""
import argparse
import json
import os
import sys

from wss_d2.utils.pipeline_runs import REPO, run_once, seconds_per_iteration, train, write_report


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="output/sipe_pipeline")
    parser.add_argument("--pretrain-config", default="configs/synthetic/tag_classifier_R18.yaml",
                        help="'' to start from the configs' MODEL.WEIGHTS")
    parser.add_argument("--sipe-config", default="configs/synthetic/sipe_R18.yaml")
    parser.add_argument("--cam-config", default="configs/synthetic/cam_R18.yaml")
    parser.add_argument("--irn-config", default="configs/synthetic/irn_R18_sipe.yaml")
    parser.add_argument("--seg-config", default="configs/synthetic/deeplabv3plus_R18.yaml",
                        help="second stage and fully supervised baseline")
    parser.add_argument("--tag-dataset", default="wss_synthetic_train_tags", help="split to make pseudo labels for")
    parser.add_argument("--gt-dataset", default="wss_synthetic_train", help="GT of the same images (quality only)")
    parser.add_argument("--baseline-results", default="", help="results.json of a finished supervised run")
    parser.add_argument("--num-gpus", type=int, default=1)
    return parser.parse_args(argv)


def export(config, weights, dataset, output, *args, opts=()):
    quality = os.path.join(output, "pseudo_label_quality.json")
    run_once([sys.executable, "tools/export_pseudo_labels.py", "--config-file", config, "--weights", weights,
              "--dataset", dataset, "--output", output, *args, *opts], quality, output + ".log")
    with open(quality) as f:
        return json.load(f)


def main(argv=None):
    args = parse_args(argv)
    out = os.path.abspath(args.output)
    figures = {}

    # 0: the pretrained weights (synthetic: a tag classifier from scratch)
    start = []
    if args.pretrain_config:
        pretrained, _ = train(args.pretrain_config, f"{out}/pretrain", num_gpus=args.num_gpus)
        start = ["MODEL.WEIGHTS", f"{out}/pretrain/model_final.pth"]
        figures["pretrained_cam_localisation_mIoU"] = pretrained.get("cam", {}).get("mIoU@best", float("nan"))

    # A: SIPE and the plain CAM, same start, network and budget
    sipe, figures["sipe_s_per_iter"] = train(args.sipe_config, f"{out}/sipe", *start, num_gpus=args.num_gpus)
    cam, figures["cam_s_per_iter"] = train(args.cam_config, f"{out}/cam", *start, num_gpus=args.num_gpus)
    figures["sipe_localisation_mIoU"] = sipe["cam"]["mIoU"]
    figures["cam_localisation_mIoU"] = cam["cam"]["mIoU@best"]
    figures["cam_best_threshold"] = cam["cam"]["best_threshold"]

    # B: IS-CAMs and confident-region labels of the tag split
    weights = f"{out}/sipe/model_final.pth"
    crf = export(args.sipe_config, weights, args.tag_dataset, f"{out}/ir_labels", "--source", "cams",
                 "--ir-labels", "--save-cams", f"{out}/cams", "--gt-dataset", args.gt_dataset)
    figures["crf_labels_mIoU_uncertain_as_background"] = crf["mIoU_ignore_as_background"]
    figures["crf_labels_mIoU_confident"] = crf["mIoU"]
    figures["crf_labels_coverage"] = crf["coverage"]

    # C: IRN on the confident regions, random walk of the IS-CAMs; its frozen backbone is the
    # pretrained one (synthetic: the tag classifier's; VOC: fresh ImageNet weights)
    cams_set, labels_set = f"{args.tag_dataset}_sipe_cams", f"{args.tag_dataset}_sipe_ir_labels"
    registrations = [
        "DATASETS.PSEUDO_LABELS", json.dumps([[labels_set, args.tag_dataset, f"{out}/ir_labels"]]),
        "DATASETS.CAMS", json.dumps([[cams_set, args.tag_dataset, f"{out}/cams"]]),
    ]
    _, figures["irn_s_per_iter"] = train(args.irn_config, f"{out}/irn", *registrations, *start,
                                         "DATASETS.TRAIN", f"('{labels_set}',)", num_gpus=args.num_gpus)
    irn = export(args.irn_config, f"{out}/irn/model_final.pth", cams_set, f"{out}/rw_labels",
                 "--gt-dataset", args.gt_dataset, "--second-stage-config", os.path.join(REPO, args.seg_config),
                 "--name", f"{args.tag_dataset}_sipe_rw", opts=registrations)
    figures["irn_labels_mIoU"] = irn["mIoU"]

    # D: second stage and the supervised baseline
    second, figures["second_stage_s_per_iter"] = train(f"{out}/rw_labels/second_stage.yaml", f"{out}/second_stage",
                                                       num_gpus=args.num_gpus)
    figures["second_stage_val_mIoU"] = second["sem_seg"]["mIoU"]
    if args.baseline_results:
        with open(args.baseline_results) as f:
            baseline = json.load(f)
        figures["supervised_s_per_iter"] = seconds_per_iteration(os.path.dirname(args.baseline_results))
    else:
        baseline, figures["supervised_s_per_iter"] = train(args.seg_config, f"{out}/supervised", num_gpus=args.num_gpus)
    figures["supervised_val_mIoU"] = baseline["sem_seg"]["mIoU"]
    figures["second_stage_fraction_of_supervised"] = figures["second_stage_val_mIoU"] / figures["supervised_val_mIoU"]

    table = "\n".join([
        "| stage | metric | value |",
        "|---|---|---:|",
        f"| tag classifier from scratch (the pretrained start) | CAM localisation mIoU, train, best τ | {figures.get('pretrained_cam_localisation_mIoU', float('nan')):.2f} |",
        f"| plain CAM (same network, budget) | localisation mIoU, train, best τ = {figures['cam_best_threshold']:.2f} | {figures['cam_localisation_mIoU']:.2f} |",
        f"| SIPE IS-CAM | localisation mIoU, train, argmax (docs/sipe.md §6.1) | {figures['sipe_localisation_mIoU']:.2f} |",
        f"| + dense CRF (docs/sipe.md §7.1) | pseudo-label mIoU, uncertain = background | {figures['crf_labels_mIoU_uncertain_as_background']:.2f} |",
        f"| + dense CRF (docs/sipe.md §7.1) | mIoU of the confident pixels ({figures['crf_labels_coverage']:.1f} % of pixels) | {figures['crf_labels_mIoU_confident']:.2f} |",
        f"| + IRN random walk (docs/sipe.md §7.2) | pseudo-label mIoU | {figures['irn_labels_mIoU']:.2f} |",
        f"| second stage on IRN labels | val mIoU | {figures['second_stage_val_mIoU']:.2f} |",
        f"| fully supervised, same model | val mIoU | {figures['supervised_val_mIoU']:.2f} |",
        f"| second stage / supervised | fraction | {figures['second_stage_fraction_of_supervised']:.3f} |",
        f"| SIPE training vs supervised | s/iter | {figures['sipe_s_per_iter']:.3f} vs {figures['supervised_s_per_iter']:.3f} |",
    ])
    write_report(out, figures, table)
    return figures


if __name__ == "__main__":
    main()
