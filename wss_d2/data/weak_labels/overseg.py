"""
Over-segmentations: one 8-bit region-id PNG per image (docs/datasets.md §3.6), the format of
SegSort's HED-owt-ucm files for VOC (`hed/<id>.png`) and of SPML's PMI-owt-ucm files for
DensePose (`seginst/pmi_0.1_256/<stem>.png`): a single-channel PNG of the image's size whose
value at a pixel is the id of its region (any ids, not necessarily consecutive). 255 is the
value of padding and void after the mapper, so files written here use ids 0..254.

For data without such files (the synthetic set, users' own data) `felzenszwalb_overseg`
computes a fallback with scikit-image's graph-based Felzenszwalb-Huttenlocher segmentation,
`skimage.segmentation.felzenszwalb(image, scale=200, sigma=0.8, min_size=50)` by default:
like an owt-ucm over-segmentation it follows image edges and gives regions of free shape and
size (on the synthetic images, about 120 px wide: 42 regions on average, at most 87, and 97.8 %
of the labelled pixels carry their region's majority class). When an image has more than 255 regions the scale is doubled until it has at most 255.
"""
import numpy as np

from ..readers import read_label_map
from ..writers import write_label_png

__all__ = [
    "OVERSEG_PARAMETERS",
    "MAX_OVERSEG_REGIONS",
    "felzenszwalb_overseg",
    "read_overseg",
    "write_overseg",
]

# scikit-image felzenszwalb parameters of the fallback over-segmentation
OVERSEG_PARAMETERS = {"scale": 200.0, "sigma": 0.8, "min_size": 50}
# region ids 0..254: 255 is padding / void once the mapper has read the file
MAX_OVERSEG_REGIONS = 255


def read_overseg(file_name, image_shape=None, image_file=None):
    """
    (H, W) int64 region ids of an 8-bit over-segmentation PNG. A missing or undecodable file,
    a file that is not 8-bit single-channel, or one whose size differs from the image
    (`image_shape` (H, W, ...)) raises, naming the file.
    """
    try:
        regions = read_label_map(file_name)
    except FileNotFoundError:
        raise FileNotFoundError(f"Over-segmentation not found: {file_name}") from None
    except ValueError as e:
        raise ValueError(f"Cannot read over-segmentation {file_name}: {e}") from e
    if regions.dtype != np.uint8:
        raise ValueError(
            f"Over-segmentation {file_name} has {regions.dtype} values; expected an 8-bit PNG of "
            "region ids (write one with datasets/make_weak_labels.py --kinds overseg)"
        )
    if image_shape is not None and tuple(regions.shape[:2]) != tuple(image_shape[:2]):
        raise ValueError(
            f"Over-segmentation {file_name} is {regions.shape[1]}x{regions.shape[0]} (WxH) but its image "
            f"{image_file} is {image_shape[1]}x{image_shape[0]}"
        )
    return regions.astype(np.int64)


def write_overseg(regions, path):
    """Write (H, W) region ids 0..254 as an 8-bit grayscale PNG (through a temporary name)."""
    regions = np.asarray(regions)
    if regions.size and (regions.min() < 0 or regions.max() >= MAX_OVERSEG_REGIONS):
        raise ValueError(
            f"{path}: region ids {regions.min()}..{regions.max()} do not fit 0..{MAX_OVERSEG_REGIONS - 1} "
            "(255 is padding / void)"
        )
    return write_label_png(regions.astype(np.uint8), path)


def felzenszwalb_overseg(image, scale=OVERSEG_PARAMETERS["scale"], sigma=OVERSEG_PARAMETERS["sigma"],
                         min_size=OVERSEG_PARAMETERS["min_size"]):
    """
    (H, W) uint8 region ids 0..n-1 (n <= 255, consecutive) of an (H, W, 3) uint8 RGB image:
    skimage.segmentation.felzenszwalb with these parameters; the scale doubles until n <= 255.
    """
    from skimage.segmentation import felzenszwalb

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"felzenszwalb_overseg expects an (H, W, 3) image, got shape {image.shape}")
    while True:
        regions = felzenszwalb(image, scale=scale, sigma=sigma, min_size=int(min_size), channel_axis=-1)
        _, regions = np.unique(regions, return_inverse=True)
        regions = regions.reshape(image.shape[:2])
        if regions.max() < MAX_OVERSEG_REGIONS:
            return regions.astype(np.uint8)
        scale *= 2.0


def write_oversegmentations(records, folder, *, scale=OVERSEG_PARAMETERS["scale"], sigma=OVERSEG_PARAMETERS["sigma"],
                            min_size=OVERSEG_PARAMETERS["min_size"]):
    """
    Write the fallback over-segmentation of each record's image (`file_name`, `image_id`) to
    `<folder>/<image_id>.png` and `<folder>/overseg.json` (method, parameters, region counts);
    returns that summary.
    """
    import json
    import os

    from ..readers import read_image

    os.makedirs(folder, exist_ok=True)
    counts = []
    for record in records:
        image = read_image(record["file_name"], "RGB")
        regions = felzenszwalb_overseg(image, scale=scale, sigma=sigma, min_size=min_size)
        write_overseg(regions, os.path.join(folder, f"{record['image_id']}.png"))
        counts.append(int(regions.max()) + 1)
    summary = {
        "method": "skimage.segmentation.felzenszwalb",
        "parameters": {"scale": float(scale), "sigma": float(sigma), "min_size": int(min_size)},
        "images": len(counts),
        "regions_mean": float(np.mean(counts)) if counts else 0.0,
        "regions_max": int(max(counts)) if counts else 0,
    }
    with open(os.path.join(folder, "overseg.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary
