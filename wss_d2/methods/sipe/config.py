"""SIPE's config keys (docs/sipe.md §10.2); defaults are the official VOC recipe."""
from detectron2.config import CfgNode as CN

from ...inference.crf import add_crf_parameters


def add_sipe_config(cfg):
    """Add MODEL.SIPE.*, TEST.SIPE.* and TEST.IR_LABELS.* (confident-region CRF labels,
    docs/sipe.md §7.1)."""
    cfg.MODEL.SIPE = CN()
    # label value of the background (the classifier has one channel per other class)
    cfg.MODEL.SIPE.BACKGROUND_CLASS = 0
    # backbone features read by the side convs, shallow to deep; the last one feeds the classifier
    cfg.MODEL.SIPE.SIDE_FEATURES = ["res2", "res3", "res4", "res5"]
    # output channels of the 1x1 side convs (F_h has their sum: 768)
    cfg.MODEL.SIPE.SIDE_CHANNELS = [128, 128, 256, 256]
    # stage whose output is detached (stem..res3 never train, docs/sipe.md §2.2); "" trains every stage
    cfg.MODEL.SIPE.DETACH_BACKBONE_AT = "res3"
    # α: factor of the background IoU in seed locating
    cfg.MODEL.SIPE.BG_IOU_SCALE = 0.5
    # seed feature in training: "res5" (official code) or "hier" (F_h, the paper's reading)
    cfg.MODEL.SIPE.SEED_FEATURE_TRAIN = "res5"
    # seed feature at inference: "hier" (official code: flip-fused F_h) or "res5"
    cfg.MODEL.SIPE.SEED_FEATURE_TEST = "hier"
    # weight of the multilabel soft-margin classification loss
    cfg.MODEL.SIPE.CLS_LOSS_WEIGHT = 1.0
    # weight of the general-specific consistency loss (0 trains a plain CAM)
    cfg.MODEL.SIPE.GSC_LOSS_WEIGHT = 1.0
    # maps returned at inference: "is_cam" (SIPE, with background) or "cam" (plain CAM baseline)
    cfg.MODEL.SIPE.TEST_OUTPUT = "is_cam"
    # background score of sem_seg with TEST_OUTPUT "cam", whose foreground maps have no
    # background channel (0.15: IRN's default cam_eval_thres); "is_cam" outputs carry their own
    # background map. Distinct from TEST.CAM_EVAL.IRN_THRESHOLD and TEST.IRN.BG_THRESHOLD
    cfg.MODEL.SIPE.CAM_BACKGROUND_SCORE = 0.15

    cfg.TEST.SIPE = CN()
    # scales of the localisation-map inference (docs/sipe.md §5), relative to the original size
    cfg.TEST.SIPE.SCALES = [1.0, 0.5, 1.5, 2.0]
    # fuse each scale with its horizontal flip inside the network
    cfg.TEST.SIPE.FLIP = True

    # confident-region labels from CAMs with a background channel by dense CRF (docs/sipe.md §7.1)
    cfg.TEST.IR_LABELS = CN()
    # the CRF parameters of docs/sipe.md §7.1 (same keys as TEST.CRF)
    add_crf_parameters(cfg.TEST.IR_LABELS, iterations=10, pos_w=3.0, pos_xy_std=3.0, bi_w=10.0, bi_xy_std=50.0,
                       bi_rgb_std=5.0)
    # confidence of the argmax label in the CRF's unary (pydensecrf unary_from_labels)
    cfg.TEST.IR_LABELS.GT_PROB = 0.7
    # background-channel factor of the "confident background" pass
    cfg.TEST.IR_LABELS.BG_SCALE = 0.5
    # uncertain pixels: 255 (ignore; IRN targets) or False: background (COCO, docs/sipe.md §7.3)
    cfg.TEST.IR_LABELS.KEEP_UNCERTAIN = True
