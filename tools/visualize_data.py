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

Side by side (--source annotation): --panels picks the columns of one PNG per image, each with its
caption: image, weak (the --dataset's labels as above), gt (the full mask of --gt-dataset, default
--dataset's own), pseudo (the labels of --pseudo-dataset, e.g. an export registered by its
second_stage.yaml given as --config-file), prediction (the model of --config-file with MODEL.WEIGHTS,
through the --eval-only path):

    python tools/visualize_data.py --dataset wss_synthetic_train_scribbles --gt-dataset wss_synthetic_train \
        --panels image weak gt pseudo prediction --pseudo-dataset my_pseudo --config-file second_stage.yaml \
        --output vis/ MODEL.WEIGHTS output/.../model_final.pth
"""
import argparse
import os

import numpy as np


PANELS = ("image", "weak", "gt", "pseudo", "prediction")
# a labelled sparse pixel or point of a class this dark (luma) is drawn lighter (black: white), so that it shows
DARK_LUMA = 60


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="a registered dataset name")
    parser.add_argument("--output", required=True, help="folder for the PNGs")
    parser.add_argument("--num", type=int, default=8, help="number of images")
    parser.add_argument("--source", choices=["annotation", "dataloader"], default="annotation")
    parser.add_argument("--config-file", default="", help="config for --source dataloader (augmentations), and "
                        "whose DATASETS.FOLDER / PSEUDO_LABELS / CAMS register --dataset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--panels", nargs="+", default=[], choices=PANELS,
                        help="side-by-side columns of one PNG per image (default: the weak labels drawn alone)")
    parser.add_argument("--gt-dataset", default="", help="the full masks of the gt panel (default: --dataset)")
    parser.add_argument("--pseudo-dataset", default="", help="the pseudo labels of the pseudo panel")
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
        image[labelled] = (visible_colors(colors)[sparse[labelled]] * 255).astype(np.uint8)
    visualizer = Visualizer(image, metadata, scale=scale)
    if "sem_seg" in mapped:
        visualizer.draw_sem_seg(mapped["sem_seg"].numpy(), alpha=0.4)
    if "points" in mapped:
        for x, y, cls in mapped["points"].tolist():
            visualizer.draw_circle((x + 0.5, y + 0.5), color=visible_colors(colors)[int(cls)], radius=2)
    if "instances" in mapped:
        for box, cls in zip(mapped["instances"].gt_boxes.tensor.tolist(), mapped["instances"].gt_classes.tolist()):
            visualizer.draw_box(box, edge_color=colors[cls])
            visualizer.draw_text(metadata.stuff_classes[cls], (box[0], box[1]), horizontal_alignment="left")
    if "image_labels" in mapped:
        names = [metadata.stuff_classes[i] for i in np.flatnonzero(mapped["image_labels"].numpy())]
        text = "tags: " + ", ".join(names)
        visualizer.draw_text(text, (4, 4), horizontal_alignment="left", font_size=fitting_font_size(text, image.shape[1]))
    return visualizer.output.get_image()


def visible_colors(colors):
    """(K, 3) colours in [0, 1] that show on dark images: black (VOC's background) becomes white, other
    dark colours are lightened toward white (a navy stays bluish), the rest are kept."""
    luma = colors @ np.array([0.299, 0.587, 0.114]) * 255
    lightened = colors + (1.0 - colors) * 0.55
    black = colors.max(axis=1) < 0.05
    out = np.where((luma < DARK_LUMA)[:, None], lightened, colors)
    out[black] = 1.0
    return out


def fitting_font_size(text, width, largest=10):
    """A font size (points, Visualizer's unit before its scale) at which `text` fits `width` image pixels."""
    return max(3, min(largest, int(width / (0.72 * max(1, len(text))))))


def caption(panel, text):
    """`panel` (H, W, 3) uint8 with `text` above it in a white strip, shrunk until it fits the width."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    while len(text) > 3 and font.getlength(text) > panel.shape[1] - 4:
        text = text[:-4] + "..."
    strip = Image.new("RGB", (panel.shape[1], 14), (255, 255, 255))
    ImageDraw.Draw(strip).text((2, 1), text, fill=(0, 0, 0), font=font)
    return np.concatenate([np.asarray(strip), panel], axis=0)


def side_by_side(panels):
    """[(caption, (H, W, 3) uint8)] -> one RGB array, the captioned panels left to right, 4 px apart."""
    columns = [caption(image, text) for text, image in panels]
    height = max(c.shape[0] for c in columns)
    padded = [np.pad(c, ((0, height - c.shape[0]), (0, 4), (0, 0)), constant_values=255) for c in columns]
    return np.concatenate(padded, axis=1)


def draw_labels(image, labels, metadata, scale=2.0):
    """A full label map (pseudo label, GT, prediction) over the image, as the weak labels are drawn."""
    from detectron2.utils.visualizer import Visualizer

    return Visualizer(image, metadata, scale=scale).draw_sem_seg(labels, alpha=0.5).get_image()


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
    panel_sources = panel_inputs(args, cfg) if args.panels else {}
    for record in DatasetCatalog.get(args.dataset)[: args.num]:
        mapped = mapper(record)
        if mapped is None:  # an empty weak label, skipped as in training
            continue
        image_id = record.get("image_id") or os.path.splitext(os.path.basename(record["file_name"]))[0]
        path = os.path.join(args.output, f"{image_id}.png")
        picture = draw(mapped, metadata)
        if args.panels:
            picture = side_by_side(draw_panels(args, record, mapped, picture, metadata, panel_sources))
        Image.fromarray(picture).save(path)
        written.append(path)
    print(f"Wrote {len(written)} images to {args.output}")
    return written


def panel_inputs(args, cfg):
    """What the panels read: {image_id: GT file}, {image_id: pseudo-label file}, the predictor."""
    from detectron2.data import DatasetCatalog

    if args.source != "annotation":
        raise SystemExit("--panels shows the files as stored: use it with --source annotation")
    sources = {}
    if "gt" in args.panels:
        gt = {r["image_id"]: r.get("sem_seg_file_name") for r in DatasetCatalog.get(args.gt_dataset or args.dataset)}
        sources["gt"] = gt
    if "pseudo" in args.panels:
        if not args.pseudo_dataset:
            raise SystemExit("--panels pseudo needs --pseudo-dataset (registered, or defined by --config-file)")
        if args.pseudo_dataset not in DatasetCatalog.list():
            raise SystemExit(f"--pseudo-dataset {args.pseudo_dataset!r} is not registered")
        sources["pseudo"] = {r["image_id"]: r.get("pseudo_sem_seg_file_name") or r.get("sem_seg_file_name")
                             for r in DatasetCatalog.get(args.pseudo_dataset)}
    if "prediction" in args.panels:
        from wss_d2.inference.predictor import SemanticPredictor

        if not cfg.MODEL.WEIGHTS:
            raise SystemExit("--panels prediction needs a model: --config-file and MODEL.WEIGHTS <checkpoint>")
        sources["prediction"] = SemanticPredictor(cfg)
    return sources


def draw_panels(args, record, mapped, weak, metadata, sources):
    """[(caption, picture)] of one image in the order of --panels, every picture at the same scale."""
    from wss_d2.data import read_image, read_label_map

    image = read_image(record["file_name"], "RGB")
    image_id = record["image_id"]
    panels = []
    for name in args.panels:
        if name == "image":
            panels.append(("image", np.asarray(resized(image, weak.shape[:2]))))
        elif name == "weak":
            panels.append((f"weak: {metadata.get('weak_label', '?')}", weak))
        elif name == "prediction":
            labels, _ = sources["prediction"](record["file_name"])
            panels.append(("prediction", draw_labels(image, labels, metadata)))
        else:
            path = sources[name].get(image_id)
            if not path:
                raise SystemExit(f"--panels {name}: no label file for {image_id}")
            panels.append((name, draw_labels(image, read_label_map(path), metadata)))
    return panels


def resized(image, size):
    """`image` (H, W, 3) uint8 bilinearly resized to `size` (h, w), as a PIL image."""
    from PIL import Image

    return Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR)


if __name__ == "__main__":
    main()
