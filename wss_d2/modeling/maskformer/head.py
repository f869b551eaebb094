"""
The MaskFormer semantic-segmentation head (SEM_SEG_HEADS_REGISTRY "WSSMaskFormerHead"; the "WSS" keeps
it apart from MaskFormer's own "MaskFormerHead" when both are importable): a pixel decoder and a
transformer predictor. Returns the predictor's outputs; with `return_pixel_features` also the per-pixel
embeddings under "pixel_features" (SimFormer's similarity net reads them).
"""
from typing import Dict

from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY

from .pixel_decoder import build_pixel_decoder
from .transformer_predictor import build_transformer_predictor

__all__ = ["WSSMaskFormerHead"]


@SEM_SEG_HEADS_REGISTRY.register()
class WSSMaskFormerHead(nn.Module):
    @configurable
    def __init__(self, *, pixel_decoder: nn.Module, transformer_predictor: nn.Module, transformer_in_feature: str):
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.predictor = transformer_predictor
        self.transformer_in_feature = transformer_in_feature
        self.return_pixel_features = False

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        in_feature = cfg.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE
        head = cfg.MODEL.SEM_SEG_HEAD
        if in_feature == "transformer_encoder":
            raise ValueError("MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE 'transformer_encoder' needs a pixel decoder "
                             "with a transformer encoder, which wss_d2 does not provide; use a backbone feature")
        if in_feature not in input_shape:
            raise ValueError(f"MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE {in_feature!r} is not a backbone output "
                             f"({sorted(input_shape)})")
        missing = [f for f in head.IN_FEATURES if f not in input_shape]
        if missing:
            raise ValueError(f"MODEL.SEM_SEG_HEAD.IN_FEATURES {missing} are not backbone outputs ({sorted(input_shape)})")
        return {
            "pixel_decoder": build_pixel_decoder(cfg, input_shape),
            "transformer_predictor": build_transformer_predictor(cfg, input_shape[in_feature].channels),
            "transformer_in_feature": in_feature,
        }

    def forward(self, features):
        mask_features, _ = self.pixel_decoder.forward_features(features)
        outputs = self.predictor(features[self.transformer_in_feature], mask_features)
        if self.return_pixel_features:
            outputs["pixel_features"] = mask_features
        return outputs
