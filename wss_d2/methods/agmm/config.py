"""AGMM's config keys (agmm.md §9); defaults are the released code's VOC behaviour."""
from detectron2.config import CfgNode as CN


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
    # weights of loss_pce, loss_g2p, loss_l2g, loss_proto, loss_cls
    cfg.MODEL.AGMM.LOSS_WEIGHTS = [1.0, 1.0, 1.0, 1.0, 1.0]
    # per-block dilations of res4 ([] = [1, 2, ..., 2], torchvision's replace_stride_with_dilation)
    cfg.MODEL.AGMM.RES4_DILATIONS = []
    # per-block dilations of res5 ([] = [2, 4, ..., 4]; Cityscapes' multi-grid [4, 8, 16])
    cfg.MODEL.AGMM.RES5_DILATIONS = []
    # inference returns softmax probabilities (the released model's eval output); False: logits
    cfg.MODEL.AGMM.TEST_SOFTMAX = True
