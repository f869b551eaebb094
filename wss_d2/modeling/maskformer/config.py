"""MaskFormer's config keys (docs/maskformer.md §5); defaults are MaskFormer R50's semantic recipe."""
from detectron2.config import CfgNode as CN


def add_maskformer_config(cfg):
    """Add MODEL.MASK_FORMER.*, MODEL.SEM_SEG_HEAD.{MASK_DIM, PIXEL_DECODER_NAME} and SOLVER.WEIGHT_DECAY_EMBED.
    wss_d2's own INPUT.DATASET_MAPPER_NAME, SOLVER.OPTIMIZER and SOLVER.BACKBONE_MULTIPLIER serve MaskFormer too."""
    mf = cfg.MODEL.MASK_FORMER = CN()
    # loss weights (docs/maskformer.md §3): losses of every decoder layer, the auxiliary ones too
    # weight of loss_ce, the queries' classification
    mf.CLASS_WEIGHT = 1.0
    # weight of loss_mask, the sigmoid focal loss of the masks matched to mask targets
    mf.MASK_WEIGHT = 20.0
    # weight of loss_dice
    mf.DICE_WEIGHT = 1.0
    # weight of the "no object" class in loss_ce
    mf.NO_OBJECT_WEIGHT = 0.1
    # losses on every decoder layer's output (False: the last only)
    mf.DEEP_SUPERVISION = True

    # matching costs (docs/maskformer.md §2); the mask cost is MASK_WEIGHT·focal + DICE_WEIGHT·dice
    mf.MATCHER = CN()
    # class-probability cost of a mask target (a class with a pixel mask)
    mf.MATCHER.MASK_TARGET_CLASS_COST = 1.0
    # mask cost of a mask target
    mf.MATCHER.MASK_TARGET_MASK_COST = 1.0
    # class-probability cost of a tag target (a class known from an image tag only: weak-shot novel)
    mf.MATCHER.TAG_TARGET_CLASS_COST = 1.0
    # mask cost of a tag target (its mask is empty; SimFormer: 0)
    mf.MATCHER.TAG_TARGET_MASK_COST = 0.0

    # transformer predictor (docs/maskformer.md §1), a name in TRANSFORMER_PREDICTOR_REGISTRY
    mf.TRANSFORMER_DECODER_NAME = "TransformerPredictor"
    # backbone feature the transformer decoder attends to
    mf.TRANSFORMER_IN_FEATURE = "res5"
    # attention heads
    mf.NHEADS = 8
    # dropout of the attention and feed-forward layers
    mf.DROPOUT = 0.1
    # width of the feed-forward layers
    mf.DIM_FEEDFORWARD = 2048
    # transformer encoder layers over the input feature (MaskFormer semantic R50: 0)
    mf.ENC_LAYERS = 0
    # transformer decoder layers
    mf.DEC_LAYERS = 6
    # pre-norm layers (False: post-norm, as DETR)
    mf.PRE_NORM = False
    # width of the queries and of the transformer
    mf.HIDDEN_DIM = 256
    # number of queries (every target of an image needs one)
    mf.NUM_OBJECT_QUERIES = 100
    # a 1x1 input projection even when the feature already has HIDDEN_DIM channels
    mf.ENFORCE_INPUT_PROJ = False
    # images are padded to a multiple of this before the backbone
    mf.SIZE_DIVISIBILITY = 32

    # per-pixel embedding width (the mask embeddings' width)
    cfg.MODEL.SEM_SEG_HEAD.MASK_DIM = 256
    # pixel decoder, a name in wss_d2.modeling.maskformer.PIXEL_DECODER_REGISTRY
    cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME = "BasePixelDecoder"
    # weight decay of nn.Embedding parameters (the queries) in "maskformer_param_groups"
    cfg.SOLVER.WEIGHT_DECAY_EMBED = 0.0
