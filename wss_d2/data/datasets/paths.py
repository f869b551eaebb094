"""Where datasets live on disk."""
import os


def get_datasets_root(override=None):
    """
    The folder that holds every dataset: `override` (a script's --root) if given, else
    $WSS_DATASETS, else detectron2's $DETECTRON2_DATASETS, else ./datasets (detectron2's
    default). Read at call time, so a registration made at import follows a later change of
    the variables. Every set wss_d2 registers reads this root; detectron2's built-in sets
    (e.g. `ade20k_sem_seg_*`, `cityscapes_fine_sem_seg_*`) read only $DETECTRON2_DATASETS, so
    wss_d2's configs name wss_d2's sets (`ade20k_wss_sem_seg_*`, `cityscapes_wss_sem_seg_*`).
    """
    if override:
        return os.path.expanduser(override)
    root = os.environ.get("WSS_DATASETS") or os.environ.get("DETECTRON2_DATASETS") or "datasets"
    return os.path.expanduser(root)
