"""Reading COCO-format annotation files (instances, DensePose) for the preparation scripts."""
import json
import os

import pycocotools.mask as mask_utils

__all__ = ["load_coco_json", "decode_segmentation"]


def load_coco_json(json_file, required_keys, description):
    """The parsed JSON, with errors naming the file; `description` (e.g. "COCO instances")
    names the kind of file expected."""
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"{description} JSON not found: {json_file}")
    try:
        with open(json_file) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"Malformed JSON in {json_file}: {e}") from e
    for key in required_keys:
        if key not in data:
            raise ValueError(f"{json_file} has no {key!r} key; is it a {description} file?")
    return data


def decode_segmentation(segmentation, height, width):
    """Binary (H, W) mask of a COCO segmentation, exactly as pycocotools' COCO.annToMask:
    polygons of one object, an uncompressed (crowd) RLE, or a compressed RLE."""
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle)
