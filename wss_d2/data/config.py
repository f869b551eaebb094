"""
Config keys of the weak-label mapper's SPML inputs (docs/spml.md §3, §4.1), added by
`add_weak_label_input_config` (called by wss_d2.config.add_wss_config). Their defaults
leave SIPE's and AGMM's inputs unchanged.
"""

__all__ = ["WEAK_LABEL_INPUT_DEFAULTS", "add_weak_label_input_config", "weak_label_input_value"]

# (section, key): default
WEAK_LABEL_INPUT_DEFAULTS = {
    # read each training image's over-segmentation (dict field overseg_file_name, an 8-bit
    # region-id PNG) into the `overseg` field (docs/spml.md §3.7)
    ("WEAK", "OVERSEG"): False,
    # image_labels from the whole, un-augmented weak-label map (dense or sparse, CAM-derived
    # labels included) whenever the dataset has no tags (docs/spml.md §3.6); off: only sparse
    # labels and points give them
    ("WEAK", "TAGS_FROM_FULL_LABEL"): False,
    # dilate scribble labels with a k×k square before augmentation (SPML: 3); 0 = off
    ("SPARSE", "SCRIBBLE_DILATION"): 0,
    # dilate point labels with a k×k square before augmentation (SPML: 6); 0 = off
    ("SPARSE", "POINT_DILATION"): 0,
}


def add_weak_label_input_config(cfg):
    """Add the keys above under cfg.INPUT.WEAK / cfg.INPUT.SPARSE (both must exist)."""
    for (section, key), value in WEAK_LABEL_INPUT_DEFAULTS.items():
        node = cfg.INPUT[section]
        if key not in node:
            node[key] = value


def weak_label_input_value(cfg, section, key):
    """cfg.INPUT.<section>.<key>, or its default from this module when the key was not added."""
    node = cfg.INPUT.get(section, None)
    if node is not None and key in node:
        return node[key]
    return WEAK_LABEL_INPUT_DEFAULTS[(section, key)]
