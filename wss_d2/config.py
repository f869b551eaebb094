"""wss_d2 config keys (on top of detectron2's defaults and its DeepLab project's) and loading."""
from detectron2.config import CfgNode as CN
from detectron2.projects.deeplab import add_deeplab_config

from .data.config import add_multi_view_input_config, add_weak_label_input_config
from .inference.crf import add_crf_parameters
from .methods.agmm.config import add_agmm_config
from .methods.irn.config import add_irn_config
from .methods.mcc.config import add_mcc_config
from .methods.sipe.config import add_sipe_config
from .methods.simformer.config import add_simformer_config
from .methods.spml.config import add_spml_config
from .modeling.backbone import add_block_dilation_config, add_vit_config
from .modeling.maskformer.config import add_maskformer_config


def add_wss_config(cfg):
    """
    Add every key wss_d2 reads. Includes detectron2's DeepLab keys (RES4_DILATION,
    RES5_MULTI_GRID, STEM_TYPE, ASPP_*, PROJECT_*, POLY_LR_*, CROP.SINGLE_CATEGORY_MAX_AREA)
    and each method's own (add_<method>_config).
    """
    add_deeplab_config(cfg)
    add_sipe_config(cfg)
    add_irn_config(cfg)
    add_agmm_config(cfg)
    add_spml_config(cfg)
    add_mcc_config(cfg)
    # MODEL.MASK_FORMER.* (wss_d2.modeling.maskformer, shared by SimFormer and the supervised MaskFormer)
    add_maskformer_config(cfg)
    add_simformer_config(cfg)
    # MODEL.RESNETS.{RES4,RES5}_BLOCK_DILATIONS, BN_MOMENTUM (build_resnet_block_dilated_backbone)
    add_block_dilation_config(cfg)
    # MODEL.VIT.* (build_vit_backbone: the MCC DeiT-B/16 ViT, docs/mcc.md §1.1)
    add_vit_config(cfg)

    # --- input ---
    # registered name of the dataset mapper (wss_d2.data.DATASET_MAPPER_REGISTRY)
    cfg.INPUT.DATASET_MAPPER_NAME = "WeakLabelDatasetMapper"
    # training: resize by a factor uniformly drawn from this range (relative to image size)
    cfg.INPUT.RANDOM_SCALE = [0.5, 2.0]
    # training: instead, resize the long side to an integer drawn from [min, max] with PIL
    # bicubic (SIPE/IRN recipe, docs/sipe.md §4.3); [] = off
    cfg.INPUT.RANDOM_LONG_SIDE = []
    # training: instead, detectron2's ResizeShortestEdge on MIN_SIZE_TRAIN, MAX_SIZE_TRAIN and
    # MIN_SIZE_TRAIN_SAMPLING (MaskFormer / SimFormer); RANDOM_SCALE is then not used
    cfg.INPUT.RESIZE_SHORTEST_EDGE = False
    # training: SSD's photometric distortion after the crop, before the flip (MaskFormer / SimFormer)
    cfg.INPUT.COLOR_AUG_SSD = False
    # training: AGMM's strong colour augmentation after crop and flip (jitter, grayscale, blur, shift)
    cfg.INPUT.STRONG_PHOTOMETRIC = False
    # training, after crop and flip (SPML's stage C, docs/spml.md §4.2): with this probability the
    # image becomes its luma 0.3 R + 0.59 G + 0.11 B on all channels (SPML: 0.3); 0 = off
    cfg.INPUT.RANDOM_GRAYSCALE = 0.0
    # then, with this probability, a RANDOM_BLUR_SIZE² blur ∝ exp(−(x² + y²)/σ²), σ ~ U(RANDOM_BLUR_SIGMA),
    # per channel (cv2.filter2D) (SPML: 0.5, [0.1, 5.0], 5); 0 = off
    cfg.INPUT.RANDOM_BLUR = 0.0
    # range [low, high] of the blur's σ, drawn uniformly per image
    cfg.INPUT.RANDOM_BLUR_SIGMA = [0.1, 5.0]
    # side of the square blur kernel, in pixels (odd)
    cfg.INPUT.RANDOM_BLUR_SIZE = 5
    # pad crops smaller than INPUT.CROP.SIZE at the bottom/right (labels: ignore; valid_mask False)
    cfg.INPUT.CROP.PAD = False
    # image value of that padding (uint8 image, before the model's normalisation)
    cfg.INPUT.CROP.PAD_IMAGE_VALUE = 0.0
    # where a smaller crop sits in the padded one: "bottom_right" padding, or "random" (SIPE, docs/sipe.md §4.3)
    cfg.INPUT.CROP.PAD_POSITION = "bottom_right"

    # --- weak labels (read by WeakLabelDatasetMapper) ---
    cfg.INPUT.WEAK = CN()
    # a training image whose weak label is empty (no tags/labelled pixel/point/box): "skip"
    # (with a warning) or "error"
    cfg.INPUT.WEAK.ON_EMPTY = "skip"
    # recompute image_labels from the labels inside the crop (SimFormer) instead of the dataset's tags
    cfg.INPUT.WEAK.TAGS_FROM_CROP = False
    # weak-shot training sets: also emit "full_sem_seg", the crop's label map with the novel pixels
    # (SimFormer's official class-balance counts read it, docs/simformer.md §3.4; nothing else may)
    cfg.INPUT.WEAK.KEEP_FULL_LABEL = False

    # image pairs (SimFormer's cross-image similarity, docs/simformer.md §5): each training item is an
    # image and a partner drawn from a partner table; the model sees both (the item's "partner" field)
    cfg.INPUT.PAIRS = CN()
    # on: every mapped training image carries a mapped partner; SOLVER.IMS_PER_BATCH counts pairs
    cfg.INPUT.PAIRS.ENABLED = False
    # partner table file (tools/build_partner_table.py); "" = built in memory from the training sets
    cfg.INPUT.PAIRS.TABLE = ""
    # probability of focusing on the novel class with the fewest partners (otherwise a uniform one)
    cfg.INPUT.PAIRS.RAREST_FOCUS_PROB = 0.01
    # partner lists are cut to random subsets of these sizes: single shared novel class, other
    # novel overlap, shared base class (the original's 500, 50, 50)
    cfg.INPUT.PAIRS.MAX_CANDIDATES = [500, 50, 50]

    # sparse labels (scribbles, points, clicks); inside wss_d2: 0..K-1 labelled, K unlabelled, 255 void
    cfg.INPUT.SPARSE = CN()
    # raw value meaning "unlabelled" in sparse PNGs; -1: the dataset's metadata
    # (sparse_unlabeled_value). 255 reads rloss/TEL-style files (255 = unlabelled)
    cfg.INPUT.SPARSE.UNLABELED_RAW = -1
    # raw value meaning "void" in sparse PNGs; -1: the dataset's metadata (sparse_void_value)
    cfg.INPUT.SPARSE.VOID_RAW = -1
    # radius of the disc drawn for each JSON point after augmentation (1: TEL's 3-px disc, 0: one pixel)
    cfg.INPUT.SPARSE.POINT_RADIUS = 1
    # before training, histogram this many files of each sparse training set and fail when the
    # unlabelled value never occurs (docs/agmm.md §1.1); 0 = no check
    cfg.INPUT.SPARSE.CHECK_FILES = 100
    # SPML's inputs of the weak-label mapper (all off by default): INPUT.WEAK.OVERSEG,
    # INPUT.WEAK.TAGS_FROM_FULL_LABEL, INPUT.SPARSE.SCRIBBLE_DILATION, INPUT.SPARSE.POINT_DILATION
    add_weak_label_input_config(cfg)
    add_multi_view_input_config(cfg)  # INPUT.MULTI_VIEW.*: MCC's views (docs/mcc.md §2), off by default

    # --- datasets ---
    # pseudo-label training sets to register: [[name, source dataset, folder of <image_id>.png], ...]
    cfg.DATASETS.PSEUDO_LABELS = []
    # splits whose images come with CAM files (IRN's random walk): [[name, source dataset,
    # folder of <image_id>.npy], ...]
    cfg.DATASETS.CAMS = []
    # a dataset of your own in the VOC layout (wss_d2/data/datasets/folder.py, docs/custom_dataset.md)
    cfg.DATASETS.FOLDER = CN()
    # its root folder; "" = none
    cfg.DATASETS.FOLDER.ROOT = ""
    # prefix of the registered names: <PREFIX>_<split>_sem_seg, <PREFIX>_<WEAK_SPLIT>_<kind>
    cfg.DATASETS.FOLDER.PREFIX = "custom"
    # class names, background first (MODEL.SEM_SEG_HEAD.NUM_CLASSES must match)
    cfg.DATASETS.FOLDER.CLASSES = []
    # one [R, G, B] per class for pictures and palette PNGs; [] = VOC's palette
    cfg.DATASETS.FOLDER.COLORS = []
    # splits with full masks (ImageSets/Segmentation/<split>.txt, SegmentationClass/<id>.png)
    cfg.DATASETS.FOLDER.SPLITS = ["train", "val"]
    # split whose weak labels are registered (tags, boxes, scribbles, points, points_json, clicks, pseudo)
    cfg.DATASETS.FOLDER.WEAK_SPLIT = "train"

    # --- model ---
    # res5 stride: 2, or 1 to keep res4's resolution without dilation (SIPE, IRN: output stride 16)
    cfg.MODEL.RESNETS.RES5_STRIDE = 2
    # wss_d2 heads implement plain cross entropy; the DeepLab project's default is hard mining
    cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE = "cross_entropy"
    # BatchNorm + ReLU after the ASPP image-pooling conv (DeepLabV3 paper; needs batch > 1)
    cfg.MODEL.SEM_SEG_HEAD.ASPP_POOL_NORM = True
    # align_corners of every bilinear resize inside the DeepLabV3+ head and of its output
    cfg.MODEL.SEM_SEG_HEAD.ALIGN_CORNERS = False
    # ASPP dropout of whole channels (Dropout2d, AGMM) instead of single elements
    cfg.MODEL.SEM_SEG_HEAD.ASPP_CHANNEL_DROPOUT = False
    # head init: "c2" (Xavier convs, classifier N(0, 0.001)) or "pytorch" (PyTorch's defaults, AGMM)
    cfg.MODEL.SEM_SEG_HEAD.INIT = "c2"
    # dilation (= padding) of LargeFOVHead's two 3x3 convs (its width is CONVS_DIM; MCC: 5, 512)
    cfg.MODEL.SEM_SEG_HEAD.LARGEFOV_DILATION = 5

    # --- inference (wss_d2.inference; README "Test-time augmentation" maps each method's protocol) ---
    # multi-scale + flip test-time augmentation
    cfg.TEST.TTA = CN()
    # multi-scale + flip test-time augmentation; off: one pass at scale 1
    cfg.TEST.TTA.ENABLED = False
    # resize factors of the input image
    cfg.TEST.TTA.SCALES = [1.0]
    # also run the horizontally mirrored image at every scale
    cfg.TEST.TTA.FLIP = True
    # fusion across scales: "mean", "sum" or "max"
    cfg.TEST.TTA.FUSION = "mean"
    # fusion of the two flips of one scale; "" = FUSION (MCC fuses flips and scales differently)
    cfg.TEST.TTA.FLIP_FUSION = ""
    # softmax every pass before fusing (False fuses logits)
    cfg.TEST.TTA.SOFTMAX = True
    # softmax at the pass size, then resize (AGMM); False: resize, then softmax (SPML)
    cfg.TEST.TTA.SOFTMAX_BEFORE_RESIZE = False
    # align_corners of every bilinear resize of TTA (image, scores, output)
    cfg.TEST.TTA.ALIGN_CORNERS = False
    # pass size: "round" (round(H*s)) or "floor" (int(H*s), AGMM and MCC)
    cfg.TEST.TTA.SIZE_ROUNDING = "round"
    # one model call for an image and its flip; False: one call per pass (less memory)
    cfg.TEST.TTA.BATCH_PASSES = True
    # round each rescaled uint8 image back to uint8 (for models that need uint8 input, e.g.
    # SIPE's PIL resize); False passes it in float32, as the original AGMM, SIPE and MCC
    # resize the float (normalised) image
    cfg.TEST.TTA.ROUND_RESIZED_IMAGE = False
    # (h, w) every test image is resized to (bilinear, aspect ratio not kept) before the scales, the
    # passes' scores then resized straight to the label size (MCC: [448, 448]); [] = the image's own
    # size. Applies with ENABLED False too (one pass at that size)
    cfg.TEST.TTA.BASE_SIZE = []
    # "pass": the model returns each pass's scores at the pass size, resized after; "fusion": the model is
    # asked for them at the fusion size (the image's, or the label size with BASE_SIZE), one resize from
    # its own resolution (MCC's original); not with the sliding window
    cfg.TEST.TTA.MODEL_OUTPUT_SIZE = "pass"

    # sliding-window inference
    cfg.TEST.SLIDING_WINDOW = CN()
    # tile every pass image (large images, e.g. Cityscapes)
    cfg.TEST.SLIDING_WINDOW.ENABLED = False
    # tile (h, w); a side shorter than the tile is processed whole
    cfg.TEST.SLIDING_WINDOW.TILE = [721, 721]
    # tile stride (h, w), at most TILE; the last tile is clamped to the border
    cfg.TEST.SLIDING_WINDOW.STRIDE = [241, 241]
    # tiles per model call
    cfg.TEST.SLIDING_WINDOW.BATCH = 4
    # softmax every tile before the overlap average (False averages logits)
    cfg.TEST.SLIDING_WINDOW.SOFTMAX = True

    # dense CRF (wss_d2.inference.DenseCRF); defaults: the DeepLab test CRF (docs/sipe.md §8.1)
    cfg.TEST.CRF = CN()
    # refine test-time predictions with dense CRF before scoring them
    cfg.TEST.CRF.ENABLED = False
    # the CRF parameters: ITERATIONS, POS_W, POS_XY_STD, BI_W, BI_XY_STD, BI_RGB_STD
    add_crf_parameters(cfg.TEST.CRF, iterations=10, pos_w=3.0, pos_xy_std=1.0, bi_w=4.0, bi_xy_std=67.0, bi_rgb_std=3.0)
    # worker processes of the CRF pool; 0 = all cores
    cfg.TEST.CRF.NUM_WORKERS = 0
    # images in flight in the pool at most (bounds memory); 0 = 2 x workers
    cfg.TEST.CRF.MAX_PENDING = 0

    # evaluators of the test sets: [] = by the dataset's evaluator_type; else any of "sem_seg"
    # (mIoU) and "cam" (localisation maps, CAMEvaluator)
    cfg.TEST.EVALUATORS = []
    # the sem_seg evaluator also writes each prediction to <OUTPUT_DIR>/inference/<dataset>/predictions/
    # <image_id>.png (raw class ids, an indexed PNG in the dataset's colours)
    cfg.TEST.SAVE_PREDICTIONS = False
    # at each evaluation, the predictions of this many images of DATASETS.TEST[0] as overlays in TensorBoard
    # ("predictions/<image_id>"); 0 = off
    cfg.TEST.VIS_PREDICTIONS = 0
    # before training, check the label maps of every DATASETS.TEST set (values: class ids or
    # ignore; size: the image's): all of them up to this many, an evenly spaced sample of this
    # many beyond; 0 = no check
    cfg.TEST.CHECK_LABELS_MAX_FILES = 3000

    # CAM-quality evaluation (wss_d2.evaluation.CAMEvaluator, docs/sipe.md §6)
    cfg.TEST.CAM_EVAL = CN()
    # background-threshold sweep: [start, stop (inclusive), step]
    cfg.TEST.CAM_EVAL.THRESHOLDS = [0.0, 0.95, 0.01]
    # background-channel multipliers to sweep for maps with a background channel; [] = off
    cfg.TEST.CAM_EVAL.BG_MULTIPLIERS = []
    # threshold always reported as mIoU@<value> (IRN's cam_eval_thres)
    cfg.TEST.CAM_EVAL.IRN_THRESHOLD = 0.15

    # pseudo-label export (tools/export_pseudo_labels.py, wss_d2.refinement)
    cfg.TEST.EXPORT = CN()
    # the constant background score given to foreground-only CAMs, against max-normalised
    # maps, when exporting with --source cams (IRN's cam_eval_thres default)
    cfg.TEST.EXPORT.CAM_BACKGROUND_SCORE = 0.15

    # --- solver ---
    # "SGD" (momentum, nesterov from SOLVER.*) or "ADAMW"
    cfg.SOLVER.OPTIMIZER = "SGD"
    # learning-rate multiplier of backbone parameters (new layers use SOLVER.BASE_LR)
    cfg.SOLVER.BACKBONE_MULTIPLIER = 1.0
    # builder of the optimizer's parameter groups, a name in wss_d2.solver.PARAM_GROUPS_REGISTRY
    cfg.SOLVER.PARAM_GROUPS = "default_param_groups"
    # gradient accumulation (docs/mcc.md §8): each optimizer step sums the gradients of this many
    # loader batches (loss / n each); SOLVER.IMS_PER_BATCH stays the per-forward batch, the
    # effective batch is IMS_PER_BATCH x ACCUMULATE_STEPS; MAX_ITER, the LR schedule, checkpoint
    # and eval periods count optimizer steps; 1 = off
    cfg.SOLVER.ACCUMULATE_STEPS = 1
    # SOLVER.CLIP_GRADIENTS.CLIP_TYPE may also be "full_model": one L2 norm over all parameters
    # keep model_best.pth of the evaluation with the best METRIC, checked at every
    # TEST.EVAL_PERIOD and at the end
    cfg.SOLVER.BEST_CHECKPOINTER = CN()
    # a key of the flattened evaluation results, e.g. "sem_seg/mIoU"; "" = off
    cfg.SOLVER.BEST_CHECKPOINTER.METRIC = ""
    # "max" or "min"
    cfg.SOLVER.BEST_CHECKPOINTER.MODE = "max"


class ConfigKeyError(KeyError):
    """An unknown or mistyped config key, with the file (or command line) that set it."""

    def __str__(self):
        return self.args[0]


def get_wss_cfg(config_file=None, opts=()):
    """
    detectron2's default config + add_wss_config, merged with `config_file` (which may
    inherit through _BASE_) and then with `opts` (KEY VALUE pairs from the command line).
    MODEL.DEVICE "cuda" falls back to "cpu" on a machine without a GPU.
    """
    import torch
    from detectron2.config import get_cfg

    cfg = get_cfg()
    add_wss_config(cfg)
    for source, merge, arg in (
        (config_file, cfg.merge_from_file, config_file),
        ("the command line", cfg.merge_from_list, list(opts)),
    ):
        if not arg:
            continue
        try:
            merge(arg)
        except (KeyError, AssertionError, ValueError) as e:
            message = e.args[0] if e.args else repr(e)
            raise ConfigKeyError(f"{source}: {message}") from e
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    return cfg
