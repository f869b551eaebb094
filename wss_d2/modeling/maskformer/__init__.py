"""
MaskFormer as shared wss_d2 components (docs/maskformer.md): pixel decoders and transformer predictors
in their own registries, the WSSMaskFormerHead, the Hungarian matcher for mask and tag targets, the set
criterion, semantic inference, the WSSMaskFormer meta-architecture and its parameter groups.
"""
from .config import add_maskformer_config
from .criterion import SetCriterion, count_mask_targets
from .head import WSSMaskFormerHead
from .inference import semantic_inference
from .losses import dice_loss, pairwise_dice_cost, pairwise_sigmoid_focal_cost, sigmoid_focal_loss
from .matcher import HungarianMatcher
from .meta_arch import WSSMaskFormer, base_loss_name, build_matcher
from .param_groups import maskformer_param_groups
from .pixel_decoder import PIXEL_DECODER_REGISTRY, BasePixelDecoder, build_pixel_decoder
from .position_encoding import PositionEmbeddingSine
from .targets import pad_label_map, semantic_targets
from .transformer import Transformer
from .transformer_predictor import MLP, TRANSFORMER_PREDICTOR_REGISTRY, TransformerPredictor, build_transformer_predictor
