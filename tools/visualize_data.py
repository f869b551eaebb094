#!/usr/bin/env python
"""
Draw images with their labels and weak labels (detectron2's Visualizer) to PNG files:
dense labels and pseudo labels as masks, scribbles/points/clicks as coloured pixels,
JSON points as circles, boxes with class names, image tags as a caption.

    python tools/visualize_data.py --dataset wss_synthetic_train_scribbles --output vis/ --num 8
    python tools/visualize_data.py --dataset voc_2012_train_aug_boxes --source dataloader \\
        --config-file configs/synthetic/deeplabv3plus_R18.yaml --output vis/

--source annotation shows the files as stored; dataloader shows what training sees (after
the config's scale/crop/flip, through the same WeakLabelDatasetMapper).
"""
import argparse
import os

import numpy as np


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="a registered dataset name")
    parser.add_argument("--output", required=True, help="folder for the PNGs")
    parser.add_argument("--num", type=int, default=8, help="number of images")
    parser.add_argument("--source", choices=["annotation", "dataloader"], default="annotation")
    parser.add_argument("--config-file", default="", help="config for --source dataloader (augmentations), and "
                        "whose DATASETS.FOLDER / PSEUDO_LABELS / CAMS register --dataset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config KEY VALUE pairs")
    return parser.parse_args(argv)


def draw(mapped, metadata, scale=2.0):
    """An RGB uint8 array: the image of one mapped dict with every label it carries."""
    from detectron2.utils.visualizer import Visualizer

    image = mapped["image"].permute(1, 2, 0).numpy().copy()
    num_classes = len(metadata.stuff_classes)
    colors = np.asarray(metadata.get("stuff_colors") or [[255, 0, 0]] * num_classes, dtype=np.float64) / 255
    if "sparse_sem_seg" in mapped:
        # labelled pixels painted solid: scribbles and clicks are too thin for mask outlines
        sparse = mapped["sparse_sem_seg"].numpy()
        labelled = sparse < num_classes
        image[labelled] = (colors[sparse[labelled]] * 255).astype(np.uint8)
    visualizer = Visualizer(image, metadata, scale=scale)
    if "sem_seg" in mapped:
        visualizer.draw_sem_seg(mapped["sem_seg"].numpy(), alpha=0.4)
    if "points" in mapped:
        for x, y, cls in mapped["points"].tolist():
            visualizer.draw_circle((x + 0.5, y + 0.5), color=colors[int(cls)], radius=2)
    if "instances" in mapped:
        for box, cls in zip(mapped["instances"].gt_boxes.tensor.tolist(), mapped["instances"].gt_classes.tolist()):
            visualizer.draw_box(box, edge_color=colors[cls])
            visualizer.draw_text(metadata.stuff_classes[cls], (box[0], box[1]), horizontal_alignment="left")
    if "image_labels" in mapped:
        names = [metadata.stuff_classes[i] for i in np.flatnonzero(mapped["image_labels"].numpy())]
        visualizer.draw_text("tags: " + ", ".join(names), (4, 4), horizontal_alignment="left")
    return visualizer.output.get_image()


def main(argv=None):
    args = parse_args(argv)
    import torch
    from PIL import Image

    import wss_d2  # noqa: F401  (registers the datasets)
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from wss_d2 import get_wss_cfg
    from wss_d2.data import WeakLabelDatasetMapper

    from wss_d2.data.datasets import register_datasets_from_config

    cfg = get_wss_cfg(args.config_file or None, args.opts)
    # the sets a config defines: your own (DATASETS.FOLDER), exported pseudo labels and CAMs
    # (DATASETS.PSEUDO_LABELS / CAMS, e.g. an export's second_stage.yaml)
    register_datasets_from_config(cfg)
    if args.dataset not in DatasetCatalog.list():
        raise SystemExit(
            f"Unknown dataset {args.dataset!r}: a registered name, or one that --config-file defines "
            "(DATASETS.FOLDER, DATASETS.PSEUDO_LABELS, DATASETS.CAMS)"
        )
    metadata = MetadataCatalog.get(args.dataset)
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = len(metadata.stuff_classes)
    cfg.INPUT.FORMAT = "RGB"
    if args.source == "annotation":
        cfg.INPUT.MIN_SIZE_TEST = 0  # the files as stored, no test-time resize
    mapper = WeakLabelDatasetMapper(cfg, is_train=args.source == "dataloader", dataset_names=[args.dataset])
    os.makedirs(args.output, exist_ok=True)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    written = []
    for record in DatasetCatalog.get(args.dataset)[: args.num]:
        mapped = mapper(record)
        if mapped is None:  # an empty weak label, skipped as in training
            continue
        image_id = record.get("image_id") or os.path.splitext(os.path.basename(record["file_name"]))[0]
        path = os.path.join(args.output, f"{image_id}.png")
        Image.fromarray(draw(mapped, metadata)).save(path)
        written.append(path)
    print(f"Wrote {len(written)} images to {args.output}")
    return written


if __name__ == "__main__":
    main()
