#!/usr/bin/env python
"""
Write SPML's CAM-derived stage-A labels (docs/spml.md §3.1, §3.2; wss_d2.refinement.cam_labels)
for a registered split with image tags or boxes, as sparse PNGs: 0..K-1 labelled, K unlabelled.

    --kind tags   background (1 - max CAM)^alpha against the image's CAMs, renormalised per
                  pixel, argmax; share below --threshold (0.2) -> unlabelled
    --kind boxes  outside every box background; inside a box of class c its CAM min-max
                  normalised over the box, >= --threshold (0.5) -> c, else unlabelled;
                  overlaps: the box with the largest normalised CAM

CAMs: <--cams>/<image_id>.npy in wss_d2's CAM format (IRN's or SIPE's dicts, e.g. from
`tools/export_pseudo_labels.py --save-cams`). Output: <--output>/<image_id>.png and
<--output>/cam_labels.json (kind, parameters, label shares). Register the folder with
`DATASETS.PSEUDO_LABELS [["<name>", "<--dataset>", "<--output>"]]`: a folder holding
cam_labels.json becomes a sparse set (weak_label "cam_labels") that keeps the source's
images and over-segmentations.

Usage:
    python datasets/make_cam_labels.py --cams output/sipe/cams --dataset voc_2012_train_aug_tags \\
        --kind tags --output datasets/VOC2012/cam/sipe_a6_th0.2
"""
import argparse
import json
import logging
import os
import shutil
import tempfile


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cams", required=True, help="folder of <image_id>.npy CAM files")
    parser.add_argument("--dataset", required=True, help="registered split with image tags (tags) or boxes (boxes)")
    parser.add_argument("--kind", required=True, choices=("tags", "boxes"))
    parser.add_argument("--output", required=True, help="folder to write <image_id>.png and cam_labels.json into")
    parser.add_argument("--alpha", type=float, default=None, help="tags: background exponent (default 6)")
    parser.add_argument("--threshold", type=float, default=None, help="default: 0.2 (tags), 0.5 (boxes)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    import numpy as np

    import wss_d2  # noqa: F401  (registers the datasets)
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.structures import BoxMode
    from wss_d2.data.datasets.pseudo_labels import CAM_LABELS_MARKER
    from wss_d2.data.readers import read_image_size
    from wss_d2.data.weak_labels.cams import read_irn_cams
    from wss_d2.data.writers import write_label_png
    from wss_d2.refinement.cam_labels import (
        BOX_CAM_LABEL_DEFAULTS, TAG_CAM_LABEL_DEFAULTS, box_cam_labels, tag_cam_labels,
    )

    if args.dataset not in DatasetCatalog.list():
        raise SystemExit(f"Unknown dataset {args.dataset!r}; registered wss_d2 datasets: see datasets/README.md")
    meta = MetadataCatalog.get(args.dataset)
    num_classes, background = len(meta.stuff_classes), meta.get("background_class", 0)
    if args.kind == "tags":
        params = {"alpha": TAG_CAM_LABEL_DEFAULTS["alpha"] if args.alpha is None else args.alpha,
                  "threshold": TAG_CAM_LABEL_DEFAULTS["threshold"] if args.threshold is None else args.threshold}
    else:
        if args.alpha is not None:
            raise SystemExit("--alpha applies to --kind tags only")
        params = {"threshold": BOX_CAM_LABEL_DEFAULTS["threshold"] if args.threshold is None else args.threshold}
    records = DatasetCatalog.get(args.dataset)
    output = os.path.abspath(args.output)
    os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
    # written next to the output and moved into place when complete (a partial folder is refused)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(output) + ".partial-", dir=os.path.dirname(output))
    counts = np.zeros(3, dtype=np.int64)  # background, foreground, unlabelled pixels
    try:
        for record in records:
            image_id = record.get("image_id") or os.path.splitext(os.path.basename(record["file_name"]))[0]
            cam_file = os.path.join(args.cams, f"{image_id}.npy")
            cam_values, cams = read_irn_cams(cam_file, background)
            height, width = read_image_size(record["file_name"])
            if cams.shape[1:] != (height, width):
                raise SystemExit(f"CAM file {cam_file} is {cams.shape[2]}x{cams.shape[1]} (WxH) but its image "
                                 f"{record['file_name']} is {width}x{height}")
            if args.kind == "tags":
                if "image_labels" not in record:
                    raise SystemExit(f"Dataset {args.dataset} has no image tags (image_labels); use a tags split")
                tags = set(int(c) for c in record["image_labels"])
                missing = tags - set(cam_values.tolist())
                if missing:
                    raise SystemExit(f"CAM file {cam_file} has no map for the tagged classes {sorted(missing)}")
                keep = np.array([int(c) in tags for c in cam_values])
                label = tag_cam_labels(cam_values[keep], cams[keep], num_classes, background_class=background, **params)
            else:
                if "annotations" not in record:
                    raise SystemExit(f"Dataset {args.dataset} has no boxes (annotations); use a boxes split")
                boxes = [BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS) for a in record["annotations"]]
                classes = [a["category_id"] for a in record["annotations"]]
                try:
                    label = box_cam_labels(cam_values, cams, np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
                                           classes, num_classes, background_class=background, **params)
                except ValueError as e:
                    raise SystemExit(f"{cam_file}: {e}") from None
            write_label_png(label, os.path.join(tmp, f"{image_id}.png"))
            counts += [(label == background).sum(), ((label < num_classes) & (label != background)).sum(),
                       (label == num_classes).sum()]
        total = max(int(counts.sum()), 1)
        summary = {
            "kind": args.kind,
            "dataset": args.dataset,
            "cams": os.path.abspath(args.cams),
            "parameters": params,
            "unlabeled_value": num_classes,
            "images": len(records),
            "shares": {"background": counts[0] / total, "foreground": counts[1] / total, "unlabelled": counts[2] / total},
        }
        summary["shares"] = {k: float(v) for k, v in summary["shares"].items()}
        with open(os.path.join(tmp, CAM_LABELS_MARKER), "w") as f:
            json.dump(summary, f, indent=2)
        if os.path.isdir(output):
            shutil.rmtree(output)
        os.rename(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
