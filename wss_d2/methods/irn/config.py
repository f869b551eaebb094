"""IRN boundary branch and random walk config keys (docs/sipe.md §7.2); defaults: VOC."""
from detectron2.config import CfgNode as CN


def add_irn_config(cfg):
    """Add MODEL.IRN.* (boundary branch training) and TEST.IRN.* (random-walk propagation)."""
    cfg.MODEL.IRN = CN()
    # backbone features the boundary branch reads, shallow to deep (all detached)
    cfg.MODEL.IRN.IN_FEATURES = ["stem", "res2", "res3", "res4", "res5"]
    # channels of each 1x1 edge conv (before the 1x1 fusion to one logit)
    cfg.MODEL.IRN.EDGE_CHANNELS = 32
    # GroupNorm groups of the edge convs
    cfg.MODEL.IRN.NUM_GROUPS = 4
    # radius of the training pairs on the stride-4 grid (152 directions for 10)
    cfg.MODEL.IRN.RADIUS = 10
    # label value of the background (bg-positive pairs are weighted apart from fg-positive ones)
    cfg.MODEL.IRN.BACKGROUND_CLASS = 0

    cfg.TEST.IRN = CN()
    # neighbourhood radius of the random-walk transition matrix (stride-4 grid)
    cfg.TEST.IRN.RADIUS = 5
    # affinities are raised to this power (β)
    cfg.TEST.IRN.BETA = 10.0
    # the transition matrix is squared this many times (2^8 = 256 steps)
    cfg.TEST.IRN.EXP_TIMES = 8
    # CAM scores are raised to this power before propagation
    cfg.TEST.IRN.CAM_POWER = 1.5
    # the random walk's background score: the constant background channel of the propagated
    # scores for CAMs without one (IRN's sem_seg_bg_thres); maps with a background channel
    # (SIPE's IS-CAM) use their own
    cfg.TEST.IRN.BG_THRESHOLD = 0.25
    # images are zero-padded (right/bottom, after normalisation) to at least this size
    cfg.TEST.IRN.PAD_SIZE = 512
