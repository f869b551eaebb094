"""
Config keys of the weak-label mapper's SPML inputs (docs/spml.md §3, §4.1), added by
`add_weak_label_input_config` (called by wss_d2.config.add_wss_config). Their defaults
leave SIPE's and AGMM's inputs unchanged.
"""

__all__ = ["WEAK_LABEL_INPUT_DEFAULTS", "add_multi_view_input_config", "add_weak_label_input_config", "weak_label_input_value"]

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


def add_multi_view_input_config(cfg):
    """cfg.INPUT.MULTI_VIEW: MCC's extra views of each training crop (docs/mcc.md §2); off by default."""
    from detectron2.config import CfgNode as CN

    if "MULTI_VIEW" in cfg.INPUT:
        return
    mv = cfg.INPUT.MULTI_VIEW = CN()
    # emit global view 1 as "image", plus "local_view", "global_view2", "img_box" and the flips (MCC)
    mv.ENABLED = False
    # probability of each view's own horizontal flip, after the geometric pipeline
    mv.FLIP_PROB = 0.5
    # ColorJitter brightness, contrast, saturation, hue (torchvision semantics)
    mv.COLOR_JITTER = [0.4, 0.4, 0.2, 0.1]
    # probability that the colour jitter is applied to a view
    mv.COLOR_JITTER_PROB = 0.8
    # probability of torchvision RandomGrayscale per view
    mv.GRAYSCALE_PROB = 0.2
    # range of the PIL Gaussian blur radius, drawn uniformly
    mv.BLUR_RADIUS = [0.1, 2.0]
    # blur probability of the main view (global view 1): always blurred in MCC
    mv.MAIN_BLUR_PROB = 1.0
    # blur probability of the local view
    mv.LOCAL_BLUR_PROB = 0.5
    # blur probability of global view 2
    mv.GLOBAL_BLUR_PROB = 0.1
    # solarize probability of global view 2
    mv.GLOBAL_SOLARIZE_PROB = 0.2
    # PIL solarize threshold: pixels >= it are inverted
    mv.SOLARIZE_THRESHOLD = 128
    # RandomResizedCrop area range of global view 2 (from the un-rescaled image, bicubic)
    mv.GLOBAL_CROP_SCALE = [0.4, 1.0]
    # RandomResizedCrop aspect-ratio range of global view 2
    mv.GLOBAL_CROP_RATIO = [0.75, 1.3333333]
    # mirror img_box's w0/w1 when the main view's flip fires (fix of quirk Q1); False = original
    mv.FLIP_BOX = False
    # the local view reuses the main view's flip decision (fix of quirk Q3); False = original
    mv.SHARE_LOCAL_FLIP = False
