"""SPML's config keys (docs/spml.md §12.2); defaults are the released code's VOC scribble recipe."""
from detectron2.config import CfgNode as CN

# SPML's stage-A loss terms; loss_<x> is weighted by MODEL.SPML.<X>_LOSS_WEIGHT and uses the
# concentration MODEL.SPML.<X>_CONCENTRATION. loss_sem_ann holds w_C·(CE + L_C) (docs/spml.md §7.6)
LOSS_NAMES = ("loss_sem_ann", "loss_sem_occ", "loss_img_sim", "loss_feat_aff")
# the relation of each term in spml.losses.SPML_SETTINGS
LOSS_RELATIONS = {"loss_sem_ann": "sem_ann", "loss_sem_occ": "sem_occ", "loss_img_sim": "img_sim",
                  "loss_feat_aff": "feat_aff"}


def loss_weight_key(loss_name):
    """The MODEL.SPML key of a loss's weight: "loss_sem_ann" -> "SEM_ANN_LOSS_WEIGHT"."""
    return f"{loss_name[len('loss_'):].upper()}_LOSS_WEIGHT"


def concentration_key(loss_name):
    """The MODEL.SPML key of a loss's concentration κ: "loss_sem_ann" -> "SEM_ANN_CONCENTRATION"."""
    return f"{loss_name[len('loss_'):].upper()}_CONCENTRATION"


def add_spml_config(cfg):
    """Add MODEL.SPML.* and TEST.SPML.*."""
    cfg.MODEL.SPML = CN()
    # name of the recipe in wss_d2.methods.spml.SPML_SETTINGS the loss keys below must equal
    # (checked when the model is built; "" = a custom recipe, nothing checked): voc_tags,
    # voc_boxes, voc_scribbles, voc_points, densepose_points
    cfg.MODEL.SPML.SETTING = "voc_scribbles"
    # embedding dimension D (VOC 64, DensePose 32)
    cfg.MODEL.SPML.EMBED_DIM = 64
    # bilinear upsampling of the head's output (stride 8 -> 4)
    cfg.MODEL.SPML.EMBED_UPSAMPLE = 2
    # backbone stages left out of the optimizer (their BatchNorm still runs in train mode)
    cfg.MODEL.SPML.FROZEN_STAGES = ["stem", "res2"]

    # --- segments (docs/spml.md §6) ---
    # k-means grid G x G over the whole (padded) crop in training (VOC 6, DensePose 12)
    cfg.MODEL.SPML.KMEANS_GRID_TRAIN = 6
    # grid at inference / pseudo-label time (VOC 12, DensePose 24)
    cfg.MODEL.SPML.KMEANS_GRID_TEST = 12
    # spherical k-means iterations
    cfg.MODEL.SPML.KMEANS_ITERATIONS = 10
    # clustering features: "xy" ([ê ⊕ xy], VOC) or "xy_rgb" (plus the smoothed colour, DensePose)
    cfg.MODEL.SPML.CLUSTER_FEATURES = "xy"
    # features of (V): "cluster" ([ê ⊕ xy] and their prototypes, VOC) or "embedding" (ê, DensePose)
    cfg.MODEL.SPML.IMG_SIM_FEATURES = "cluster"
    # global segment sets kept in the memory bank (VOC 2, DensePose 0); not checkpointed
    cfg.MODEL.SPML.MEMORY_BANK_SIZE = 2
    # treat unlabelled pixels as void for clustering, (V) and (O): reproduces a run on weak-label
    # files whose unlabelled value is 255 (docs/spml.md §2.3); False keeps them (the paper)
    cfg.MODEL.SPML.UNLABELED_AS_VOID = False
    # the exact (logsumexp) contrastive loss; False: the released fp32 subtract-and-test
    cfg.MODEL.SPML.EXACT = False
    # pixels per chunk of the pixel x segment similarity (bounds memory)
    cfg.MODEL.SPML.CHUNK_SIZE = 4096
    # training without `overseg` in the inputs: False fails naming the field; True uses one
    # region per image (no over-segmentation, (V) then has no negative)
    cfg.MODEL.SPML.ALLOW_MISSING_OVERSEG = False

    # --- losses (docs/spml.md §7.7); a weight of 0 turns a term off ---
    # (C) semantic annotation: w_C·(CE + L_C)
    cfg.MODEL.SPML.SEM_ANN_LOSS_WEIGHT = 1.0
    # concentration κ of (C)
    cfg.MODEL.SPML.SEM_ANN_CONCENTRATION = 6.0
    # (O) semantic co-occurrence (tags of the full weak label)
    cfg.MODEL.SPML.SEM_OCC_LOSS_WEIGHT = 0.5
    # concentration κ of (O)
    cfg.MODEL.SPML.SEM_OCC_CONCENTRATION = 12.0
    # (V) low-level image similarity (same over-segment region, same image)
    cfg.MODEL.SPML.IMG_SIM_LOSS_WEIGHT = 0.1
    # concentration κ of (V)
    cfg.MODEL.SPML.IMG_SIM_CONCENTRATION = 16.0
    # (A) feature affinity: configured in the released DensePose recipe but never applied; on
    # only with FEATURE_AFFINITY True (the paper)
    cfg.MODEL.SPML.FEATURE_AFFINITY = False
    # weight of (A) when it is on
    cfg.MODEL.SPML.FEAT_AFF_LOSS_WEIGHT = 0.5
    # concentration κ of (A)
    cfg.MODEL.SPML.FEAT_AFF_CONCENTRATION = 12.0
    # cosine above which a segment takes the label of its nearest labelled segment
    cfg.MODEL.SPML.FEAT_AFF_THRESHOLD = 0.95
    # weight of ê in the affinity features normalize([a·ê ; ℓ (; c)])
    cfg.MODEL.SPML.FEAT_AFF_SCALE = 0.1

    # weight of loss_ce: SPMLClassifier's cross entropy; in SPMLEmbedder only when (C) is off
    # (SEM_ANN_LOSS_WEIGHT 0), since the auxiliary CE is otherwise inside loss_sem_ann
    cfg.MODEL.SPML.CE_LOSS_WEIGHT = 1.0

    # --- classifier heads (docs/spml.md §5.4) ---
    # dropout of the stage-A auxiliary classifier
    cfg.MODEL.SPML.AUX_DROPOUT = 0.75
    # dropout of the stage-C classifier (SPMLClassifier)
    cfg.MODEL.SPML.CLASSIFIER_DROPOUT = 0.65
    # norm of the classifier heads' BatchNorm ("BN", "SyncBN"; PyTorch's momentum 0.1)
    cfg.MODEL.SPML.CLASSIFIER_NORM = "BN"
    # SPMLClassifier: False (stage C) keeps the embedding network frozen, in eval mode; True trains
    # backbone, embedding head and classifier end to end with the cross entropy on the labelled
    # pixels (partial CE: the naive baseline of tools/run_spml_comparison.py, not part of SPML),
    # MODEL.SPML.FROZEN_STAGES still frozen
    cfg.MODEL.SPML.TRAIN_EMBEDDING = False

    # --- parameter groups (docs/spml.md §8.1, spml_param_groups) ---
    # LR multiplier of everything outside the backbone (embedding head, classifiers); their biases
    # also get SOLVER.BIAS_LR_FACTOR
    cfg.MODEL.SPML.HEAD_LR_MULTIPLIER = 10.0

    # --- inference (docs/spml.md §9.1, §9.5) ---
    cfg.TEST.SPML = CN()
    # resize the longer side to this before the pass (VOC 512, DensePose 640); 0 = the image's size
    # (multi-scale inference through TEST.TTA: set 0)
    cfg.TEST.SPML.IMAGE_SIZE = 512
    # sliding window: pad to at least this, windows of this size with this stride, the last one
    # aligned to the border (VOC 512, DensePose 640); 0 = one pass over the whole image
    cfg.TEST.SPML.WINDOW_SIZE = 512
