"""The weak-label kinds: the values of a dataset's metadata `weak_label`, listed once."""

__all__ = ["WEAK_LABEL_KINDS", "SPARSE_KINDS", "SCATTERED_KINDS", "LABEL_MAP_KINDS", "SIMULATED_KINDS"]

# what the training dicts of a dataset carry besides the image
WEAK_LABEL_KINDS = ("full", "tags", "boxes", "scribbles", "points", "clicks", "pseudo", "weak_shot")
# kinds stored as sparse PNGs (a few labelled pixels, the rest "unlabelled")
SPARSE_KINDS = ("scribbles", "points", "clicks")
# sparse kinds whose labelled pixels are moved one by one under augmentation, never resized
SCATTERED_KINDS = ("points", "clicks")
# kinds whose training dicts name one label PNG per image (sparse, pseudo-label or weak-shot GT)
LABEL_MAP_KINDS = SPARSE_KINDS + ("pseudo", "weak_shot")
# kinds that weak_labels.simulate.write_weak_labels (and datasets/make_weak_labels.py) can write
SIMULATED_KINDS = ("tags", "boxes", "points", "scribbles", "clicks")
