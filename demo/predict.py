#!/usr/bin/env python
"""
Run a trained wss_d2 model on your own images and see what it predicts.

    python demo/predict.py --config-file configs/synthetic/deeplabv3plus_R18.yaml \\
        --input photos/ "more/*.jpg" one.png --output predictions/ \\
        MODEL.WEIGHTS output/synthetic/deeplabv3plus_R18/model_final.pth

For each image it writes to --output:
  <name>.png          the predicted label map: raw class indices (as the dataset's label PNGs), stored as an
                      indexed PNG in the dataset's colours so that it opens as a picture
  <name>_overlay.png  the prediction over the image with the class names and a legend
  <name>_cam_<class>.png  with --cams, for CAM methods (SIPE, MCC with MODEL.MCC.TEST_OUTPUT cam): the CAM
                      of each class present, as a heat map over the image
The prediction is the one `train_net.py --eval-only` makes for the same image: the config's test mapper,
TTA, sliding window and dense CRF (TEST.*), the weights loaded with the strict check. Class names and
colours come from the config's first test (else training) dataset. Models that need image tags at test
time (SIPE, the CAM outputs) take them from --tags (class names or ids, the same for every image).
"""
import argparse
import glob
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--input", nargs="+", required=True, help="images, folders or glob patterns")
    parser.add_argument("--output", required=True, help="folder for the PNGs (created)")
    parser.add_argument("--weights", default="", help="checkpoint (default MODEL.WEIGHTS of the config)")
    parser.add_argument("--cams", action="store_true", help="also write the CAM heat maps of CAM methods")
    parser.add_argument("--tags", default="", help="comma-separated class names or ids present in every image")
    parser.add_argument("--alpha", type=float, default=0.5, help="opacity of the overlay's colours")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config KEY VALUE pairs")
    return parser.parse_args(argv)


def expand_inputs(patterns):
    """Image paths of files, folders (their images, sorted) and glob patterns, in the order given."""
    paths = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            paths += sorted(os.path.join(pattern, f) for f in os.listdir(pattern) if f.lower().endswith(IMAGE_EXTENSIONS))
        elif os.path.isfile(pattern):
            paths.append(pattern)
        else:
            matches = sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
            if not matches:
                raise SystemExit(f"--input {pattern!r}: no such file or folder, and no file matches it")
            paths += matches
    if not paths:
        raise SystemExit(f"--input {' '.join(patterns)}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    return paths


def parse_tags(text, class_names):
    if not text:
        return None
    tags = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        if item.isdigit():
            tags.append(int(item))
        elif item in class_names:
            tags.append(class_names.index(item))
        else:
            raise SystemExit(f"--tags: {item!r} is neither a class id nor one of {class_names}")
    return tags


def main(argv=None):
    args = parse_args(argv)
    from detectron2.utils.logger import setup_logger
    from tqdm import tqdm

    from wss_d2 import get_wss_cfg
    from wss_d2.data.readers import read_image
    from wss_d2.data.writers import label_palette, write_label_png
    from wss_d2.inference.predictor import SemanticPredictor
    from wss_d2.utils.visualization import cam_heatmap, overlay_with_legend

    setup_logger(name="wss_d2")
    paths = expand_inputs(args.input)
    cfg = get_wss_cfg(args.config_file, args.opts)
    predictor = SemanticPredictor(cfg, weights=args.weights or None)
    meta = predictor.metadata
    names = list(meta.stuff_classes)
    tags = parse_tags(args.tags, names)
    palette = label_palette(meta.get("stuff_colors", None), meta.get("ignore_label", 255))
    os.makedirs(args.output, exist_ok=True)
    stems = set()
    for path in tqdm(paths, desc="predict", unit="image"):
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in stems:  # two inputs of the same name from different folders
            stem = f"{stem}_{len(stems)}"
        stems.add(stem)
        labels, output = predictor(path, tags)
        image = read_image(path, "RGB")
        write_label_png(labels.astype(np.uint8), os.path.join(args.output, stem + ".png"), palette=palette)
        overlay = overlay_with_legend(image, labels, meta, alpha=args.alpha)
        write_rgb(overlay, os.path.join(args.output, stem + "_overlay.png"))
        if args.cams:
            if "cams" not in output:
                raise SystemExit(
                    f"--cams: {cfg.MODEL.META_ARCHITECTURE} returns no CAMs with this config (a CAM method's "
                    "CAM output does, e.g. SIPE, or MCC with MODEL.MCC.TEST_OUTPUT cam)"
                )
            cams = output["cams"].float().cpu()
            for cam, class_id in zip(cams, output["cam_labels"].tolist()):
                cam = resize_to(cam, image.shape[:2])
                heat = cam_heatmap(image, cam / max(float(cam.max()), 1e-5))
                write_rgb(heat, os.path.join(args.output, f"{stem}_cam_{names[class_id]}.png"))
    print(f"{len(paths)} images -> {args.output}")


def resize_to(cam, size):
    import torch.nn.functional as F

    if tuple(cam.shape) == tuple(size):
        return cam.numpy()
    return F.interpolate(cam[None, None], size=tuple(size), mode="bilinear", align_corners=False)[0, 0].numpy()


def write_rgb(array, path):
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(array)).save(path)


if __name__ == "__main__":
    main()
