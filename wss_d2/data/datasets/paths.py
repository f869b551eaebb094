"""Where datasets live on disk."""
import os


def get_datasets_root():
    """
    The folder that holds every dataset: $WSS_DATASETS, else detectron2's
    $DETECTRON2_DATASETS, else ./datasets (detectron2's default). Read at call time, so a
    registration made at import follows a later change of the variables.
    """
    root = os.environ.get("WSS_DATASETS") or os.environ.get("DETECTRON2_DATASETS") or "datasets"
    return os.path.expanduser(root)
