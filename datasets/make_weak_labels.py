#!/usr/bin/env python
"""
Simulate weak labels from any registered dataset with full masks, to study label budgets.

Writes, seeded per image (so any subset gives the same labels), in the real formats and a
VOC-style layout under --output:
    tags       cls_labels.npy             {id: float32 multi-hot over the foreground classes}
    boxes      Annotations/<id>.xml       one VOC box per object (8-connected region of a class)
    points     point/segcls/<id>.png      n points per object + background points, 3-px discs;
               points.json                the same points as What's-the-Point JSON
    scribbles  scribble/seginst[_<f>]/<id>.png  fraction f of each region's skeleton, 3 px wide
    clicks     <N>clicks/<id>.png         N single pixels per image among valid pixels
    weak_labels.json                      parameters and the achieved densities
    overseg    overseg_felzenszwalb/<id>.png  fallback over-segmentation of each image (8-bit
               region ids 0..254, SPML's format) from scikit-image's
               felzenszwalb(scale=200, sigma=0.8, min_size=50), the scale doubled until an image
               has at most 255 regions; overseg.json: parameters and region counts. Needs
               images only, no masks, so it also serves users' own registered data.
Sparse PNGs hold K (the number of classes) on unlabelled pixels (the AGMM/SPML convention).

Usage:
    python datasets/make_weak_labels.py --dataset voc_2012_train_aug_sem_seg \\
        --output datasets/VOC2012 --kinds scribbles --scribble-fraction 0.3
    python datasets/make_weak_labels.py --dataset my_train_set --output datasets/mine --kinds overseg
    python datasets/make_weak_labels.py --config-file my_config.yaml --dataset custom_train_sem_seg \
        --output /data/mine --kinds tags scribbles points    # your own dataset (docs/custom_dataset.md)
"""
import argparse
import json
import logging
import os


def parse_args(argv=None):
    from wss_d2.data.weak_labels.kinds import SIMULATED_KINDS
    from wss_d2.data.weak_labels.overseg import OVERSEG_PARAMETERS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="registered dataset; full masks (sem_seg_file_name) needed except for --kinds overseg")
    parser.add_argument("--output", required=True, help="folder to write the weak labels into")
    parser.add_argument(
        "--kinds", nargs="+", default=list(SIMULATED_KINDS), choices=SIMULATED_KINDS + (OVERSEG_KIND,),
        help=f"default: the simulated kinds {list(SIMULATED_KINDS)}; '{OVERSEG_KIND}' writes over-segmentations",
    )
    parser.add_argument("--config-file", default="",
                        help="a config whose DATASETS.FOLDER (your own dataset, docs/custom_dataset.md) or "
                             "DATASETS.PSEUDO_LABELS registers --dataset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--points-per-object", type=int, default=1)
    parser.add_argument("--background-points", type=int, default=None, help="default: --points-per-object")
    parser.add_argument("--scribble-fraction", type=float, nargs="+", default=[1.0],
                        help="kept fraction of each skeleton; several write a folder each")
    parser.add_argument("--clicks", type=int, default=20, help="clicks per image")
    parser.add_argument("--overseg-scale", type=float, default=OVERSEG_PARAMETERS["scale"],
                        help="felzenszwalb scale (larger: fewer, larger regions)")
    parser.add_argument("--overseg-sigma", type=float, default=OVERSEG_PARAMETERS["sigma"],
                        help="felzenszwalb Gaussian pre-smoothing")
    parser.add_argument("--overseg-min-size", type=int, default=OVERSEG_PARAMETERS["min_size"],
                        help="felzenszwalb minimum region size (pixels)")
    return parser.parse_args(argv)


OVERSEG_KIND = "overseg"
OVERSEG_FOLDER = "overseg_felzenszwalb"


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    import wss_d2  # noqa: F401  (registers the datasets)
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from wss_d2.data.weak_labels.simulate import write_weak_labels

    if args.config_file:
        from wss_d2 import get_wss_cfg
        from wss_d2.data.datasets import register_datasets_from_config

        register_datasets_from_config(get_wss_cfg(args.config_file))
    if args.dataset not in DatasetCatalog.list():
        raise SystemExit(f"Unknown dataset {args.dataset!r}; registered wss_d2 datasets: see datasets/README.md "
                         "(your own: DATASETS.FOLDER in a config given by --config-file)")
    records = DatasetCatalog.get(args.dataset)
    for record in records:
        record.setdefault("image_id", record["file_name"].rsplit("/", 1)[-1].rsplit(".", 1)[0])
    simulated = [k for k in args.kinds if k != OVERSEG_KIND]
    summary = {}
    if OVERSEG_KIND in args.kinds:
        from wss_d2.data.weak_labels.overseg import write_oversegmentations

        summary[OVERSEG_KIND] = write_oversegmentations(
            records, os.path.join(args.output, OVERSEG_FOLDER),
            scale=args.overseg_scale, sigma=args.overseg_sigma, min_size=args.overseg_min_size,
        )
    if not simulated:
        print(json.dumps(summary, indent=2))
        return summary
    without_masks = [r["file_name"] for r in records if "sem_seg_file_name" not in r]
    if without_masks:
        raise SystemExit(f"Dataset {args.dataset} has images without full masks, e.g. {without_masks[0]}")
    meta = MetadataCatalog.get(args.dataset)
    summary.update(write_weak_labels(
        records,
        args.output,
        kinds=simulated,
        num_classes=len(meta.stuff_classes),
        class_names=meta.stuff_classes,
        ignore_label=meta.get("ignore_label", 255),
        background_class=meta.get("background_class", 0),
        seed=args.seed,
        points_per_object=args.points_per_object,
        background_points=args.background_points,
        scribble_fraction=args.scribble_fraction,
        num_clicks=args.clicks,
    ))
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
