"""
Pictures of predictions for people: an overlay of a label map on its image (detectron2's Visualizer,
the dataset's class names and colours) with a legend of the classes shown, and CAM heat maps.
"""
import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["overlay_with_legend", "cam_heatmap", "legend_strip"]

LEGEND_ROW = 16  # pixels per legend row


def _colors(metadata, num_classes):
    colors = metadata.get("stuff_colors", None)
    if not colors:
        rng = np.random.RandomState(0)
        colors = rng.randint(0, 256, (num_classes, 3)).tolist()
    return [tuple(int(c) for c in color) for color in colors]


def legend_strip(class_ids, metadata, width):
    """An RGB uint8 strip listing `class_ids` as a colour box and the class name, rows of LEGEND_ROW px."""
    names = list(metadata.stuff_classes)
    colors = _colors(metadata, len(names))
    font = ImageFont.load_default()
    entries = [(colors[i], names[i]) for i in class_ids]
    # entries flow left to right and wrap at the image width
    sizes = [12 + 4 + int(font.getlength(name)) + 12 for _, name in entries]
    rows, x = 1, 0
    for size in sizes:
        if x and x + size > width:
            rows, x = rows + 1, 0
        x += size
    strip = Image.new("RGB", (width, rows * LEGEND_ROW + 4), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    x, y = 2, 2
    for (color, name), size in zip(entries, sizes):
        if x > 2 and x + size > width:
            x, y = 2, y + LEGEND_ROW
        draw.rectangle([x, y + 1, x + 11, y + 12], fill=color, outline=(0, 0, 0))
        draw.text((x + 16, y), name, fill=(0, 0, 0), font=font)
        x += size
    return np.asarray(strip)


def overlay_with_legend(image, labels, metadata, alpha=0.5, ignore_label=255, min_side=320):
    """
    image (H, W, 3) uint8 RGB, labels (H, W) class ids: the labels drawn over the image by detectron2's
    Visualizer in the dataset's colours (class names on the regions), with a legend of the classes
    present below it. A picture whose shorter side is under `min_side` is drawn enlarged to it, so
    that the class names fit. Returns an RGB uint8 array (width W times that scale).
    """
    from detectron2.utils.visualizer import ColorMode, Visualizer

    num_classes = len(metadata.stuff_classes)
    shown = labels.copy()
    shown[(shown < 0) | (shown >= num_classes)] = ignore_label
    scale = max(1.0, min_side / max(1, min(image.shape[:2])))
    drawn = Visualizer(image, metadata, scale=scale, instance_mode=ColorMode.SEGMENTATION).draw_sem_seg(
        shown, alpha=alpha)
    picture = drawn.get_image()
    present = [int(c) for c in np.unique(shown) if c != ignore_label]
    return np.concatenate([picture, legend_strip(present, metadata, picture.shape[1])], axis=0)


def cam_heatmap(image, cam, alpha=0.5):
    """A CAM (H, W) in [0, 1] as a jet colour map blended over the image (H, W, 3) uint8 RGB."""
    from matplotlib import colormaps

    heat = colormaps["jet"](np.clip(np.asarray(cam, dtype=np.float64), 0, 1))[..., :3] * 255
    return (alpha * heat + (1 - alpha) * image.astype(np.float64)).round().astype(np.uint8)
