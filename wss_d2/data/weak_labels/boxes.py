"""
Bounding boxes as weak labels (docs/datasets.md §3.2): reading PASCAL VOC
`Annotations/<id>.xml`, deriving boxes from a label map (synthetic box supervision), and
rasterising boxes into a box label map.

Boxes are detectron2 continuous XYXY_ABS coordinates: a box [x0, y0, x1, y1] covers the pixel
columns floor(x0) .. ceil(x1) - 1 (and the rows likewise), so the pixel columns 3..5 are the
box x0=3, x1=6, and VOC's 1-based inclusive xmin..xmax is [xmin - 1, xmax].
"""
import os
import xml.etree.ElementTree as ET

import numpy as np
from scipy import ndimage

from detectron2.structures import BoxMode

__all__ = [
    "read_voc_xml",
    "voc_boxes_to_annotations",
    "boxes_from_label_map",
    "rasterize_boxes",
    "write_voc_xml",
]


def _child_text(element, path, xml_file, what):
    child = element.find(path)
    if child is None or child.text is None or not child.text.strip():
        raise ValueError(f"VOC annotation {xml_file}: missing <{path}> in {what}")
    return child.text.strip()


def _child_number(element, path, xml_file, what):
    text = _child_text(element, path, xml_file, what)
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"VOC annotation {xml_file}: <{path}> of {what} is not a number: {text!r}") from None


def read_voc_xml(xml_file, class_names):
    """
    The image size and the objects of a VOC `Annotations/<id>.xml`:
    {"width", "height", "objects": [{"name", "category_id", "bbox", "difficult"}]}.

    category_id is the index of the name in `class_names` (which holds "background" at 0 for
    the semantic-segmentation label space, so aeroplane = 1). bbox is detectron2's conversion
    [xmin - 1, ymin - 1, xmax, ymax] of VOC's 1-based inclusive pixel indices. Difficult
    objects are kept (difficult=True), as detectron2 does. Only direct `object/name` children
    are read, so the `part` names inside person objects (head, hand, foot) are never objects.
    """
    if not os.path.isfile(xml_file):
        raise FileNotFoundError(f"VOC annotation not found: {xml_file}")
    try:
        root = ET.parse(xml_file).getroot()
    except ET.ParseError as e:
        raise ValueError(f"Malformed VOC annotation {xml_file}: {e}") from e
    if root.tag != "annotation":
        raise ValueError(f"VOC annotation {xml_file}: root element is <{root.tag}>, expected <annotation>")
    name_to_id = {name: i for i, name in enumerate(class_names)}
    objects = []
    for index, obj in enumerate(root.findall("object")):
        what = f"object {index}"
        name = _child_text(obj, "name", xml_file, what)
        if name not in name_to_id:
            raise ValueError(f"VOC annotation {xml_file}: unknown class name {name!r} in {what}")
        box = [
            _child_number(obj, f"bndbox/{k}", xml_file, f"{what} ({name})")
            for k in ("xmin", "ymin", "xmax", "ymax")
        ]
        difficult = obj.find("difficult")
        objects.append({
            "name": name,
            "category_id": name_to_id[name],
            "bbox": [box[0] - 1.0, box[1] - 1.0, box[2], box[3]],
            "difficult": difficult is not None and (difficult.text or "0").strip() not in ("0", ""),
        })
    return {
        "width": int(_child_number(root, "size/width", xml_file, "the annotation")),
        "height": int(_child_number(root, "size/height", xml_file, "the annotation")),
        "objects": objects,
    }


def voc_boxes_to_annotations(parsed, include_difficult=True):
    """detectron2 box annotations {"bbox", "bbox_mode", "category_id"} of a `read_voc_xml` result."""
    return [
        {"bbox": list(obj["bbox"]), "bbox_mode": BoxMode.XYXY_ABS, "category_id": obj["category_id"]}
        for obj in parsed["objects"]
        if include_difficult or not obj["difficult"]
    ]


_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def boxes_from_label_map(label, ignore_label=255, background_class=0, min_area=1):
    """
    One (category_id, [x0, y0, x1, y1]) per 8-connected region of each class in a label map,
    skipping the background and ignore values and regions of fewer than `min_area` pixels.
    Boxes are continuous XYXY_ABS (a region over columns 3..5 gives x0=3, x1=6), ordered by
    class and then by the region's first pixel in row-major order.
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"boxes_from_label_map expects an (H, W) label map, got shape {label.shape}")
    boxes = []
    for class_id in np.unique(label):
        if class_id == ignore_label or (background_class is not None and class_id == background_class):
            continue
        regions, num_regions = ndimage.label(label == class_id, structure=_EIGHT_CONNECTED)
        areas = np.bincount(regions.ravel(), minlength=num_regions + 1)
        for region_index, slices in enumerate(ndimage.find_objects(regions), start=1):
            if slices is None or areas[region_index] < min_area:
                continue
            rows, cols = slices
            box = [float(cols.start), float(rows.start), float(cols.stop), float(rows.stop)]
            boxes.append((int(class_id), box))
    return boxes


def _pixel_extent(box, height, width):
    """Pixel rows/columns [r0, r1) x [c0, c1) that a continuous XYXY box touches, clipped."""
    x0, y0, x1, y1 = box
    c0 = int(np.clip(np.floor(x0), 0, width))
    c1 = int(np.clip(np.ceil(x1), 0, width))
    r0 = int(np.clip(np.floor(y0), 0, height))
    r1 = int(np.clip(np.ceil(y1), 0, height))
    return r0, r1, c0, c1


def rasterize_boxes(
    annotations, height, width, *, background_class=0, ignore_label=255, overlap_ignore=False
):
    """
    A uint8 (H, W) box label map (docs/datasets.md §3.2): `background_class` outside all
    boxes, each box filled with its category_id, larger boxes first so that small boxes stay
    on top (equal areas keep the input order). With `overlap_ignore`, pixels covered by boxes
    of two or more different classes become `ignore_label`.
    """
    label = np.full((height, width), background_class, dtype=np.uint8)
    boxes = []
    for index, ann in enumerate(annotations):
        category_id = int(ann["category_id"])
        if not 0 <= category_id <= 255 or category_id == ignore_label:
            raise ValueError(
                f"Box {index} has category_id {category_id}, which is not a uint8 class value "
                f"other than the ignore label {ignore_label}"
            )
        mode = ann.get("bbox_mode", BoxMode.XYXY_ABS)
        box = BoxMode.convert(list(ann["bbox"]), mode, BoxMode.XYXY_ABS)
        area = max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)
        boxes.append((area, category_id, _pixel_extent(box, height, width)))
    boxes.sort(key=lambda b: -b[0])  # stable: equal areas keep the input order
    # first class covering each pixel (-1: none), to find pixels shared by different classes
    covering_class = np.full((height, width), -1, dtype=np.int16) if overlap_ignore else None
    conflict = np.zeros((height, width), dtype=bool) if overlap_ignore else None
    for _, category_id, (r0, r1, c0, c1) in boxes:
        label[r0:r1, c0:c1] = category_id
        if overlap_ignore:
            region = covering_class[r0:r1, c0:c1]
            conflict[r0:r1, c0:c1] |= (region != -1) & (region != category_id)
            region[region == -1] = category_id
    if overlap_ignore:
        label[conflict] = ignore_label
    return label


def write_voc_xml(xml_file, image_id, width, height, objects):
    """
    Write a VOC `Annotations/<id>.xml` holding `objects` = [(class name, [x0, y0, x1, y1])]
    (continuous XYXY_ABS, the inverse of `read_voc_xml`'s conversion to 1-based xmin..xmax).
    """
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2012"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(int(value))
    ET.SubElement(root, "segmented").text = "1"
    for name, (x0, y0, x1, y1) in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        for tag, value in (("pose", "Unspecified"), ("truncated", 0), ("difficult", 0)):
            ET.SubElement(obj, tag).text = str(value)
        bndbox = ET.SubElement(obj, "bndbox")
        for tag, value in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1), ("ymax", y1)):
            ET.SubElement(bndbox, tag).text = str(int(round(value)))
    os.makedirs(os.path.dirname(os.path.abspath(xml_file)), exist_ok=True)
    ET.ElementTree(root).write(xml_file)
    return xml_file
