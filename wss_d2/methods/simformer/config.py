"""SimFormer's config keys (docs/simformer.md §7); defaults are the official code's, loss weights the COCO recipe's."""
from detectron2.config import CfgNode as CN

DISTILL_FUNCS_FIXED = ("ce", "cce")  # plus "b<threshold>", e.g. "b0.5"
DISTILL_TARGETS = ("NovelScore", "FullScore", "FullLogit", "FullLogitC")
STUDENT_PAIRINGS = ("official_intra", "cross")
BALANCE_COUNTS = ("full_label", "base_only", "valid_pairs")

# SimFormer's own loss-dict names and the MODEL.SIMFORMER key weighting each (loss_ce, loss_mask and
# loss_dice are MaskFormer's: MODEL.MASK_FORMER.{CLASS,MASK,DICE}_WEIGHT)
SIMFORMER_LOSS_WEIGHT_KEYS = {
    "loss_comp": "COMP_LOSS_WEIGHT",
    "loss_sim": "SIM_LOSS_WEIGHT",
    "loss_distill": "DISTILL_LOSS_WEIGHT",
}


def add_simformer_config(cfg):
    """Add MODEL.SIMFORMER.* (the MaskFormer keys are MODEL.MASK_FORMER.*, the pairs INPUT.PAIRS.*)."""
    sf = cfg.MODEL.SIMFORMER = CN()
    # complementary loss on every decoder layer (docs/simformer.md §3.3; COCO 0.15, ADE20K 0.2)
    sf.COMP_LOSS_WEIGHT = 0.15
    # the constant "ignore proposal" logit in the complementary loss's max (σ = 0.05); <= -50 leaves it out
    sf.IGNORE_LOGIT = -2.9444
    # pixel-pair similarity net's loss on base-pixel pairs across the pair (§3.4; 1.0 in the crosim
    # recipes, 0 = no similarity net and no pairs needed)
    sf.SIM_LOSS_WEIGHT = 0.0
    # distillation of the similarity net into the novel masks (§3.5; COCO 0.1, ADE20K 0.5); needs SIM_LOSS_WEIGHT > 0
    sf.DISTILL_LOSS_WEIGHT = 0.0
    # "ce" (targets and predictions clamped to [0.01, 0.99]), "cce" (pulled up above 0.5 and down below,
    # by |t − 0.5|) or "b<t>" (−(teacher − t)·student, e.g. "b0.5")
    sf.DISTILL_FUNC = "ce"
    # the student's per-pixel vector: "NovelScore" (Σ_q p_q[novel] σ(m_q)), "FullScore" (all K classes),
    # "FullLogit" (raw class logits instead of probabilities), "FullLogitC" (their ReLU)
    sf.DISTILL_TO = "NovelScore"
    # "official_intra": the student compares the anchor's distill points with each other (the official
    # code); "cross": with the partner's points, like the teacher (the paper's description)
    sf.STUDENT_PAIRING = "official_intra"
    # the similarity net's input embeddings are detached: its loss trains only the net (official True)
    sf.SIM_DETACH = True
    # the teacher runs without gradient (official True)
    sf.TEACHER_DETACH = True
    # base points per image for the similarity net, of which POSITIVE_FRACTION on one common base class
    sf.BASE_POINTS = 100
    # share of the base points drawn from the chosen common base class (or all base pixels)
    sf.POSITIVE_FRACTION = 0.8
    # distill points per image, drawn from the not-base region
    sf.NOVEL_POINTS = 100
    # distill points may fall on crop padding (official True: padding is "not base")
    sf.DISTILL_POINTS_ON_PADDING = True
    # the class-balance counts of the similarity loss (§3.4): "full_label" counts positive / negative
    # pairs with the full ground truth, novel pixels included (official; needs INPUT.WEAK.KEEP_FULL_LABEL);
    # "base_only" on the base-only label map (no novel pixel label); "valid_pairs" only the valid pairs
    sf.BALANCE_COUNTS = "full_label"
    # the counts come from every BALANCE_STRIDE-th point of each image against every BALANCE_STRIDE-th partner point
    sf.BALANCE_STRIDE = 5
    # the counts of this many past iterations are summed (a queue starting with one count of 1 each)
    sf.BALANCE_QUEUE = 25
    # the similarity net (§3.4): residual blocks of 1x1 convs on [e_i ; e_j]
    sf.SIMNET = CN()
    # number of residual blocks
    sf.SIMNET.NUM_BLOCKS = 3
    # width of the blocks
    sf.SIMNET.HIDDEN_DIM = 256
    # BatchNorm after each conv (train mode, also in the teacher pass)
    sf.SIMNET.BATCH_NORM = True
