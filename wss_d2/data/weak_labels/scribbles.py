"""
Scribble labels (docs/datasets.md §3.3): ScribbleSup XML files (one `<id>.xml` per
image, also shipped zipped as `voc_scribbles.zip` by GatedCRFLoss/TEL) and their
rasterisation into sparse label PNGs.

XML: root <annotation> with <size><width/><height/></size> and one <polygon> per scribble,
holding a <tag> (short class name) and ordered <point><X/><Y/></point> vertices (pixels).
"""
import os
import xml.etree.ElementTree as ET

import cv2
import numpy as np

from .points import draw_discs

__all__ = ["SCRIBBLESUP_TAGS", "read_scribblesup_xml", "rasterize_scribbles"]

# ScribbleSup's tag names; position = PASCAL VOC label value (background is scribbled too)
SCRIBBLESUP_TAGS = (
    "background", "plane", "bike", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "table", "dog", "horse", "motorbike", "person", "plant", "sheep", "sofa", "train", "monitor",
)
_TAG_TO_LABEL = {tag: label for label, tag in enumerate(SCRIBBLESUP_TAGS)}


def _int_text(element, path, source_name, what):
    child = element.find(path)
    text = child.text.strip() if child is not None and child.text else ""
    try:
        return int(round(float(text)))
    except ValueError:
        raise ValueError(
            f"Scribble file {source_name}: missing or non-numeric <{path}> in {what}: {text!r}"
        ) from None


def read_scribblesup_xml(source, name=None):
    """
    (width, height, [(label value, (N, 2) int32 array of x, y vertices), ...]) of one
    ScribbleSup XML. `source` is a path or a binary file object (e.g. a member of
    `voc_scribbles.zip` opened with zipfile); `name` is used in error messages (defaults to the
    path or the file object's name). A polygon without points gives an empty (0, 2) array.
    """
    if name is None:
        is_path = isinstance(source, (str, os.PathLike))
        name = os.fspath(source) if is_path else getattr(source, "name", repr(source))
    if isinstance(source, (str, os.PathLike)) and not os.path.isfile(source):
        raise FileNotFoundError(f"Scribble file not found: {name}")
    try:
        root = ET.parse(source).getroot()
    except ET.ParseError as e:
        raise ValueError(f"Malformed scribble file {name}: {e}") from e
    if root.tag != "annotation":
        raise ValueError(f"Scribble file {name}: root element is <{root.tag}>, expected <annotation>")
    width = _int_text(root, "size/width", name, "the annotation")
    height = _int_text(root, "size/height", name, "the annotation")
    scribbles = []
    for index, polygon in enumerate(root.findall("polygon")):
        tag_element = polygon.find("tag")
        tag = tag_element.text.strip() if tag_element is not None and tag_element.text else ""
        if tag not in _TAG_TO_LABEL:
            raise ValueError(
                f"Scribble file {name}: polygon {index} has unknown tag {tag!r}; "
                f"expected one of {SCRIBBLESUP_TAGS}"
            )
        what = f"polygon {index} ({tag})"
        vertices = [
            (_int_text(point, "X", name, what), _int_text(point, "Y", name, what))
            for point in polygon.findall("point")
        ]
        scribbles.append((_TAG_TO_LABEL[tag], np.asarray(vertices, dtype=np.int32).reshape(-1, 2)))
    return width, height, scribbles


def rasterize_scribbles(scribbles, height, width, *, unlabeled_value, thickness=3):
    """
    A uint8 (H, W) sparse label map: `unlabeled_value` everywhere, each scribble drawn in its
    label value as a polyline `thickness` pixels wide with a filled disc of diameter
    `thickness` at every vertex (TEL's rasteriser; rloss draws the same width-3 lines).
    Scribbles are drawn in order, later ones over earlier ones; parts outside the image are
    cut off.

    The stroke is a 1-pixel 8-connected polyline dilated by the disc, so that it is exactly
    `thickness` pixels across (OpenCV's own thick lines are wider: thickness 3 draws 5 px).
    """
    if thickness < 1 or thickness % 2 == 0:
        raise ValueError(f"Scribble thickness must be a positive odd number of pixels, got {thickness}")
    radius = thickness // 2
    disc = np.zeros((2 * radius + 1, 2 * radius + 1), np.uint8)
    draw_discs(disc, [radius], [radius], [1], radius)
    label = np.full((height, width), unlabeled_value, dtype=np.uint8)
    stroke = np.empty((height, width), dtype=np.uint8)
    for value, vertices in scribbles:
        value = int(value)
        if not 0 <= value <= 255:
            raise ValueError(f"Scribble label {value} is not a uint8 label value")
        vertices = np.asarray(vertices, dtype=np.int32).reshape(-1, 2)
        if not len(vertices):
            continue
        stroke[:] = 0
        cv2.polylines(stroke, [vertices.reshape(-1, 1, 2)], False, 1, thickness=1, lineType=cv2.LINE_8)
        draw_discs(stroke, vertices[:, 0], vertices[:, 1], np.ones(len(vertices), np.uint8), 0)
        label[cv2.dilate(stroke, disc) > 0] = value
    return label
