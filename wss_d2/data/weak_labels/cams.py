"""
Class activation maps as pickled .npy dicts, in two formats:
  * IRN's `result/cam/<id>.npy` (docs/datasets.md §3.5): {"keys": 0-based foreground
    class indices present in the image, "cam": stride-4 maps, "high_res": float32
    (len(keys), H, W) maps at image size};
  * SIPE's (docs/sipe.md §5): {"keys": label values, background first, "IS_CAM": (len(keys), H, W)
    maps at image size}; written as float16 (the maps only feed an argmax or a CRF).
"""
import numpy as np

from ..readers import read_pickled_dict
from ..writers import write_pickled_dict

__all__ = ["read_irn_cams", "write_irn_cams"]


def read_irn_cams(npy_file, background_class=0):
    """
    (label values (C,), float32 maps (C, H, W)) from an IRN CAM file. IRN's keys count
    foreground classes from 0, so with a background class at 0 label value = key + 1.
    """
    table = read_pickled_dict(npy_file, "CAM file")
    if table is not None and "keys" in table and "IS_CAM" in table:  # SIPE: keys are label values
        labels = np.asarray(table["keys"], dtype=np.int64).reshape(-1)
        maps = np.asarray(table["IS_CAM"], dtype=np.float32)
        if maps.ndim != 3 or maps.shape[0] != len(labels):
            raise ValueError(f"CAM file {npy_file}: 'IS_CAM' has shape {maps.shape}, expected ({len(labels)}, H, W)")
        return labels, maps
    if table is None or "keys" not in table or "high_res" not in table:
        raise ValueError(f"CAM file {npy_file} is not an IRN CAM dict with 'keys' and 'high_res'")
    keys = np.asarray(table["keys"], dtype=np.int64).reshape(-1)
    maps = np.asarray(table["high_res"], dtype=np.float32)
    if maps.ndim != 3 or maps.shape[0] != len(keys):
        raise ValueError(
            f"CAM file {npy_file}: 'high_res' has shape {maps.shape}, expected ({len(keys)}, H, W) "
            "(one map per entry of 'keys')"
        )
    offset = 1 if background_class == 0 else 0
    return keys + offset, maps


def write_irn_cams(npy_file, labels, maps, background_class=0):
    """
    Write maps of label values `labels` (inverse of `read_irn_cams`): SIPE's format when
    they include the background, IRN's otherwise. Written atomically.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if background_class is not None and background_class in labels.tolist():
        write_pickled_dict(npy_file, {"keys": labels, "IS_CAM": np.asarray(maps, dtype=np.float16)})
        return
    offset = 1 if background_class == 0 else 0
    keys = np.asarray(labels, dtype=np.int64) - offset
    write_pickled_dict(npy_file, {"keys": keys, "high_res": np.asarray(maps, dtype=np.float32)})
