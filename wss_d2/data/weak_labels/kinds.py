"""The weak-label kinds: the values of a dataset's metadata `weak_label`, listed once."""

__all__ = ["WEAK_LABEL_KINDS", "SPARSE_KINDS", "SCATTERED_KINDS", "REGION_KINDS", "LABEL_MAP_KINDS", "SIMULATED_KINDS"]

# what the training dicts of a dataset carry besides the image
# ("cam_labels": SPML's stage-A labels of tags or boxes derived from CAMs, with unlabelled pixels,
# wss_d2.refinement.cam_labels and datasets/make_cam_labels.py)
WEAK_LABEL_KINDS = ("full", "tags", "boxes", "scribbles", "points", "clicks", "pseudo", "weak_shot", "cam_labels")
# kinds stored as sparse PNGs (labelled pixels, the rest "unlabelled")
SPARSE_KINDS = ("scribbles", "points", "clicks", "cam_labels")
# sparse kinds whose labelled pixels are moved one by one under augmentation, never resized
SCATTERED_KINDS = ("points", "clicks")
# sparse kinds whose labels are regions (most pixels labelled): resampled by nearest neighbour
# like dense maps, never placed pixel by pixel
REGION_KINDS = ("cam_labels",)
# kinds whose training dicts name one label PNG per image (sparse, pseudo-label or weak-shot GT)
LABEL_MAP_KINDS = SPARSE_KINDS + ("pseudo", "weak_shot")
# kinds that weak_labels.simulate.write_weak_labels (and datasets/make_weak_labels.py) can write
SIMULATED_KINDS = ("tags", "boxes", "points", "scribbles", "clicks")
