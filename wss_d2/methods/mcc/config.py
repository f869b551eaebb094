"""MCC's config keys (docs/mcc.md §9, §14); defaults are the official VOC recipe."""
from detectron2.config import CfgNode as CN

from ...modeling.energy_loss import add_energy_loss_config
from ...refinement.par import add_par_config

CAM_SOURCES = ("aux", "final")
TEST_OUTPUTS = ("seg", "cam", "cam_aux")


def add_mcc_config(cfg):
    """Add MODEL.MCC.* (the backbone's keys are MODEL.VIT.*; the schedule is SOLVER.LR_SCHEDULER_NAME
    "LinearWarmupPolyLR" on SOLVER.WARMUP_ITERS, WARMUP_FACTOR and POLY_LR_POWER)."""
    mcc = cfg.MODEL.MCC = CN()
    # label value of the background (the classifiers have one channel per other class)
    mcc.BACKGROUND_CLASS = 0
    # the LR of the classifiers, the projector and the LargeFOV head is SOLVER.BASE_LR times this
    mcc.HEAD_LR_MULTIPLIER = 10.0

    # loss weights (docs/mcc.md §5.5); MCC_LOSS_WEIGHT 0 skips the masked views (ToCo-style baseline)
    mcc.CLS_LOSS_WEIGHT = 1.0
    # classification loss of the auxiliary classifier (block AUX_LAYER's tokens)
    mcc.CLS_AUX_LOSS_WEIGHT = 1.0
    # patch-token affinity loss (docs/mcc.md §5.2)
    mcc.AFF_LOSS_WEIGHT = 0.2
    # masked collaborative contrast (docs/mcc.md §4.3)
    mcc.MCC_LOSS_WEIGHT = 0.5
    # segmentation loss of the LargeFOV head on PAR pseudo labels, after SEG_START_ITER
    mcc.SEG_LOSS_WEIGHT = 0.1
    # energy (regularised) loss, after SEG_START_ITER
    mcc.REG_LOSS_WEIGHT = 0.05
    # the segmentation and energy losses count from iterations > this (VOC 2000, COCO 8000)
    mcc.SEG_START_ITER = 2000
    # temperature τ of the contrast
    mcc.TEMPERATURE = 0.5

    # which CAM ("aux" or "final") decides the views' roles, up to and after FLAG_CAM_SWITCH_ITER
    # (VOC: aux, then final; COCO: aux, aux)
    mcc.FLAG_CAMS = ["aux", "final"]
    # the flag CAM is FLAG_CAMS[0] for iterations <= this, FLAG_CAMS[1] after
    mcc.FLAG_CAM_SWITCH_ITER = 12000
    # which CAM the pseudo labels come from, up to and after PSEUDO_LABEL_CAM_SWITCH_ITER
    # (VOC: final, final; COCO: aux, then final)
    mcc.PSEUDO_LABEL_CAMS = ["final", "final"]
    # the pseudo-label CAM is PSEUDO_LABEL_CAMS[0] for iterations <= this, [1] after
    mcc.PSEUDO_LABEL_CAM_SWITCH_ITER = 12000

    # CAMs during training (docs/mcc.md §3) and their thresholds (§4.1, §5.2, §6)
    mcc.CAM = CN()
    # scales of the training-time CAMs, in this order (bilinear, int(s·H), flips fused by max)
    mcc.CAM.SCALES = [1.0, 0.5, 1.5]
    # confident foreground: ROI 2, affinity labels, high background of the pseudo labels (COCO 0.65)
    mcc.CAM.HIGH_THRESH = 0.7
    # confident background: ROI 0, affinity labels, low background of the pseudo labels
    mcc.CAM.LOW_THRESH = 0.25
    # background score of the CAM outputs (TEST_OUTPUT "cam" / "cam_aux"; COCO 0.45)
    mcc.CAM.BACKGROUND_SCORE = 0.5

    # random block masks of the local views (docs/mcc.md §4.1)
    mcc.MASK = CN()
    # masked local views per image
    mcc.MASK.NUM_LOCAL = 8
    # block side in tokens (the crop side must be a multiple of PATCH_SIZE * BLOCK)
    mcc.MASK.BLOCK = 4
    # probability that a block is masked
    mcc.MASK.RATIO = 0.95
    # a view is positive when the ROI sum of its visible tokens exceeds POS_FRAC * their count
    mcc.MASK.POS_FRAC = 0.2

    # run the masked views on their visible tokens only: equal to the original's full masked forward up
    # to float rounding (a key masked in every block never reaches a visible token), at ~5 % of its cost
    mcc.DROP_MASKED_TOKENS = True

    # DINO-style projection head on the CLS token, and its EMA teacher (docs/mcc.md §1.3)
    mcc.PROJECTOR = CN()
    # width of the two hidden layers
    mcc.PROJECTOR.HIDDEN_DIM = 2048
    # bottleneck width (L2-normalised before the last layer)
    mcc.PROJECTOR.BOTTLENECK_DIM = 256
    # outputs of the weight-normalised last layer
    mcc.PROJECTOR.OUT_DIM = 1024
    # θ_teacher <- m·θ_teacher + (1 − m)·θ_student once per optimizer step
    mcc.PROJECTOR.EMA_MOMENTUM = 0.9

    # the LargeFOV segmentation head (docs/mcc.md §1.3)
    mcc.DECODER = CN()
    # channels of its two dilated 3x3 convs
    mcc.DECODER.CHANNELS = 512
    # dilation (= padding) of those convs
    mcc.DECODER.DILATION = 5

    # behaviours of the original that look like bugs, reproduced by default (docs/mcc.md §15)
    mcc.QUIRKS = CN()
    # Q2: the pixel image box slices the token grid of the affinity labels; False converts it to tokens
    mcc.QUIRKS.PTC_PIXEL_BOX = True
    # Q4: before SEG_START_ITER the segmentation and energy losses are computed and multiplied by 0
    # (zero gradients: AdamW decays the head and counts its steps); False leaves them out
    mcc.QUIRKS.KEEP_ZERO_WEIGHTED_LOSSES = True

    # inference output: "seg" (LargeFOV logits), "cam" / "cam_aux" (multi-scale CAMs of the final /
    # aux classifier as scores with background CAM.BACKGROUND_SCORE, with "cams" for the CAM evaluator)
    mcc.TEST_OUTPUT = "seg"

    # PAR of the pseudo labels (docs/mcc.md §6): DILATIONS, ITERS, W1, W2, DOWNSCALE
    mcc.PAR = CN()
    add_par_config(mcc.PAR)
    # energy loss (docs/mcc.md §5.4): WEIGHT, SIGMA_RGB, SIGMA_XY, SCALE, KERNEL, EXACT_CHUNK
    mcc.REG = CN()
    add_energy_loss_config(mcc.REG)

