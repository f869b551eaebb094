"""Result files as strict JSON: NaN and infinities (e.g. the IoU of a class absent from both
the GT and the prediction) become null, which every JSON parser reads."""
import json
import math
import os

import numpy as np

__all__ = ["json_safe", "write_json"]


def json_safe(value):
    """`value` with every non-finite float (also numpy floats) replaced by None."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path, value, indent=2):
    """Write `value` to `path` as strict JSON, through a temporary file (no half-written file)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(json_safe(value), f, indent=indent, allow_nan=False)
    os.replace(tmp, path)
