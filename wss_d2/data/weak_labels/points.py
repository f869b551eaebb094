"""
Point (click) labels (docs/datasets.md §3.4): the "What's the Point" JSON files as
shipped by GatedCRFLoss/TEL, and their rasterisation into sparse label PNGs.

JSON: {image id: [{"x": float, "y": float, "cls": int(, "rank": int)}, ...]}; x is the column,
y the row, in pixels. The foreground file (`voc_whats_the_point.json`, cls 1..20) and the
background file (`voc_whats_the_point_bg_from_scribbles.json`, cls 0) are merged. A few real
points lie outside their image; they are dropped, never clipped onto the border.
"""
import json
import math
import numbers
import os

import numpy as np

__all__ = ["load_whats_the_point", "drop_points_outside", "rasterize_points", "draw_discs", "paint_footprints"]


def _number(entry, key, json_file, image_id, index):
    value = entry.get(key) if isinstance(entry, dict) else None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(
            f"Point file {json_file}: point {index} of image {image_id} has no valid {key!r} "
            f"(got {entry!r}); expected a dict with numeric 'x', 'y' and integer 'cls'"
        )
    return value


def _read_points_file(json_file):
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"Point file not found: {json_file}")
    try:
        with open(json_file) as f:
            table = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"Malformed point file {json_file}: {e}") from e
    if not isinstance(table, dict):
        raise ValueError(f"Point file {json_file} does not hold a dict of image id -> list of points")
    points = {}
    for image_id, entries in table.items():
        if not isinstance(entries, list):
            raise ValueError(f"Point file {json_file}: the points of image {image_id} are not a list")
        rows = []
        for index, entry in enumerate(entries):
            x = _number(entry, "x", json_file, image_id, index)
            y = _number(entry, "y", json_file, image_id, index)
            cls = _number(entry, "cls", json_file, image_id, index)
            if cls != int(cls) or not 0 <= cls <= 255:
                raise ValueError(
                    f"Point file {json_file}: point {index} of image {image_id} has class {cls!r}; "
                    "expected an integer label value 0..255"
                )
            rows.append((x, y, cls))
        points[image_id] = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
    return points


def load_whats_the_point(json_files):
    """
    {image id: (N, 3) float64 array of x, y, label} from one or more What's-the-Point JSON
    files. Points of an image found in several files are concatenated in file order (TEL puts
    the foreground file first, then the background one).
    """
    if isinstance(json_files, (str, os.PathLike)):
        json_files = [json_files]
    merged = {}
    for json_file in json_files:
        for image_id, points in _read_points_file(os.fspath(json_file)).items():
            merged[image_id] = np.concatenate([merged[image_id], points]) if image_id in merged else points
    return merged


def _pixel_indices(points):
    """Columns and rows of the pixels holding the points: round half up, as floor(v + 0.5)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return np.floor(points[:, 0] + 0.5).astype(np.int64), np.floor(points[:, 1] + 0.5).astype(np.int64)


def drop_points_outside(points, height, width):
    """(points whose pixel lies inside the image, number of points dropped)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    cols, rows = _pixel_indices(points)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    return points[inside], int((~inside).sum())


def _disc_offsets(radius):
    """Pixel offsets (dy, dx) of a disc: pixels whose centre is within radius + 0.5 (radius 1 = 3x3)."""
    span = np.arange(-radius, radius + 1)
    dy, dx = np.meshgrid(span, span, indexing="ij")
    inside = dy**2 + dx**2 <= (radius + 0.5) ** 2
    return dy[inside], dx[inside]


def draw_discs(label_map, cols, rows, values, radius):
    """
    Paint a filled disc of `radius` (0 = single pixel, 1 = diameter 3) with values[i] around
    each pixel (rows[i], cols[i]) of `label_map`, in place and in order (later discs win).
    Parts of a disc outside the map are cut off.
    """
    return paint_footprints(label_map, cols, rows, values, *_disc_offsets(int(radius)))


def paint_footprints(label_map, cols, rows, values, dy, dx):
    """
    Paint values[i] at the pixels (rows[i] + dy, cols[i] + dx) of `label_map`, in place and in
    order (a later point wins a pixel it shares with an earlier one); pixels outside the map
    are cut off. `dy`, `dx`: the footprint's pixel offsets (e.g. a disc).
    """
    cols, rows, values = (np.asarray(a).reshape(-1) for a in (cols, rows, values))
    if not cols.size:
        return label_map
    # (num_points, footprint size) pixel grids, flattened point-major (drawing order)
    all_rows = (rows[:, None] + dy[None, :]).ravel()
    all_cols = (cols[:, None] + dx[None, :]).ravel()
    all_values = np.repeat(values, dy.size)
    height, width = label_map.shape
    inside = (all_rows >= 0) & (all_rows < height) & (all_cols >= 0) & (all_cols < width)
    flat = all_rows[inside] * width + all_cols[inside]
    all_values = all_values[inside]
    # numpy does not define which write wins for repeated indices: keep each pixel's last one
    _, last_from_end = np.unique(flat[::-1], return_index=True)
    last = flat.size - 1 - last_from_end
    label_map[flat[last] // width, flat[last] % width] = all_values[last]
    return label_map


def rasterize_points(points, height, width, *, unlabeled_value, radius=1):
    """
    A uint8 (H, W) sparse label map: `unlabeled_value` everywhere, and a filled disc of the
    point's label at pixel (round x, round y) for each point (radius 1 = the 3-px discs of
    TEL/AGMM; radius 0 = single pixels). Points outside the image are dropped; later points
    are drawn over earlier ones.
    """
    label = np.full((height, width), unlabeled_value, dtype=np.uint8)
    points, _ = drop_points_outside(points, height, width)
    values = points[:, 2]
    if ((values < 0) | (values > 255) | (values != np.round(values))).any():
        raise ValueError(f"Point labels must be integers 0..255, got {np.unique(values).tolist()}")
    cols, rows = _pixel_indices(points)
    return draw_discs(label, cols, rows, values.astype(np.uint8), radius)
