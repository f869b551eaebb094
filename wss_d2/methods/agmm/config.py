"""AGMM's config keys (docs/agmm.md §9); defaults are the released code's VOC behaviour."""
from detectron2.config import CfgNode as CN

# AGMM's loss terms; loss_<x> is weighted by MODEL.AGMM.<X>_LOSS_WEIGHT
LOSS_NAMES = ("loss_pce", "loss_g2p", "loss_l2g", "loss_proto", "loss_cls")


def loss_weight_key(loss_name):
    """The MODEL.AGMM key of a loss's weight: "loss_pce" -> "PCE_LOSS_WEIGHT"."""
    return f"{loss_name[len('loss_'):].upper()}_LOSS_WEIGHT"


def add_agmm_config(cfg):
    """Add MODEL.AGMM.*."""
    cfg.MODEL.AGMM = CN()
    # the GMM terms (g2p, l2g, proto, cls); False trains with partial cross entropy only (baseline)
    cfg.MODEL.AGMM.ENABLE = True
    # GMM variance: "fixed" (released code, 2σ² = 1), "adaptive" (paper Eq. 7) or "global"
    cfg.MODEL.AGMM.SIGMA_MODE = "fixed"
    # centroid repulsion centres: "sum" over images (released code) or "mean"
    cfg.MODEL.AGMM.PROTO_CENTER = "sum"
    # stop the GMM → prediction gradient at the GMM target (the released code does not)
    cfg.MODEL.AGMM.DETACH_GMM_TARGET = False
    # weight of loss_pce, partial cross entropy on the labelled pixels
    cfg.MODEL.AGMM.PCE_LOSS_WEIGHT = 1.0
    # weight of loss_g2p, GMM → prediction
    cfg.MODEL.AGMM.G2P_LOSS_WEIGHT = 1.0
    # weight of loss_l2g, labels → GMM
    cfg.MODEL.AGMM.L2G_LOSS_WEIGHT = 1.0
    # weight of loss_proto, centroid repulsion
    cfg.MODEL.AGMM.PROTO_LOSS_WEIGHT = 1.0
    # weight of loss_cls, the absent-class term
    cfg.MODEL.AGMM.CLS_LOSS_WEIGHT = 1.0
    # the positional list of older configs; merging it fails with the names above
    if not cfg.key_is_renamed("MODEL.AGMM.LOSS_WEIGHTS"):  # yacs refuses registering twice
        cfg.register_renamed_key(
            "MODEL.AGMM.LOSS_WEIGHTS",
            "MODEL.AGMM.{PCE,G2P,L2G,PROTO,CLS}_LOSS_WEIGHT",
            "one key per loss: " + ", ".join(f"MODEL.AGMM.{loss_weight_key(name)} ({name})" for name in LOSS_NAMES),
        )
    # per-block dilations moved to the shared backbone keys (build_resnet_block_dilated_backbone)
    for stage in (4, 5):
        old_key = f"MODEL.AGMM.RES{stage}_DILATIONS"
        if not cfg.key_is_renamed(old_key):
            cfg.register_renamed_key(
                old_key,
                f"MODEL.RESNETS.RES{stage}_BLOCK_DILATIONS",
                f"one dilation per res{stage} block, read by build_resnet_block_dilated_backbone (of which "
                f"build_agmm_resnet_backbone is an alias): set MODEL.RESNETS.RES{stage}_BLOCK_DILATIONS",
            )
    # inference returns softmax probabilities (the released model's eval output); False: logits
    cfg.MODEL.AGMM.TEST_SOFTMAX = True
