"""
MaskFormer's pixel decoders, in their own registry (MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME).

`BasePixelDecoder` (docs/maskformer.md §1): an FPN without an encoder. The coarsest feature goes
through a 3x3 conv + norm + ReLU (`layer_<n>`); each finer feature, from coarse to fine, through a
1x1 lateral conv + norm (`adapter_<i>`), is added to the running map upsampled by nearest neighbour
and goes through a 3x3 conv + norm + ReLU (`layer_<i>`). `mask_features` (3x3 conv with bias, no norm)
turns the finest map into the per-pixel embeddings. Convs are c2_xavier_fill-initialised; a conv has a
bias only without norm.
"""
from typing import Dict

import fvcore.nn.weight_init as weight_init
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.utils.registry import Registry

__all__ = ["PIXEL_DECODER_REGISTRY", "BasePixelDecoder", "build_pixel_decoder"]

PIXEL_DECODER_REGISTRY = Registry("WSS_MASKFORMER_PIXEL_DECODER")
PIXEL_DECODER_REGISTRY.__doc__ = """
MaskFormer pixel decoders: `decoder(cfg, input_shape)`; forward_features(features) returns
(mask_features (B, MASK_DIM, H/4, W/4), the transformer's input feature or None).
"""


def build_pixel_decoder(cfg, input_shape):
    name = cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME
    decoder = PIXEL_DECODER_REGISTRY.get(name)(cfg, input_shape)
    if not callable(getattr(decoder, "forward_features", None)):
        raise ValueError(f"MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME {name!r} has no forward_features()")
    return decoder


@PIXEL_DECODER_REGISTRY.register()
class BasePixelDecoder(nn.Module):
    @configurable
    def __init__(self, input_shape: Dict[str, ShapeSpec], *, conv_dim: int, mask_dim: int, norm: str = ""):
        super().__init__()
        input_shape = sorted(input_shape.items(), key=lambda item: item[1].stride)
        self.in_features = [name for name, _ in input_shape]
        channels = [shape.channels for _, shape in input_shape]
        use_bias = norm == ""
        lateral_convs, output_convs = [], []
        for idx, in_channels in enumerate(channels):
            if idx == len(channels) - 1:
                output_conv = Conv2d(in_channels, conv_dim, 3, padding=1, bias=use_bias,
                                     norm=get_norm(norm, conv_dim), activation=F.relu)
                weight_init.c2_xavier_fill(output_conv)
                self.add_module(f"layer_{idx + 1}", output_conv)
                lateral_convs.append(None)
            else:
                lateral_conv = Conv2d(in_channels, conv_dim, 1, bias=use_bias, norm=get_norm(norm, conv_dim))
                output_conv = Conv2d(conv_dim, conv_dim, 3, padding=1, bias=use_bias,
                                     norm=get_norm(norm, conv_dim), activation=F.relu)
                weight_init.c2_xavier_fill(lateral_conv)
                weight_init.c2_xavier_fill(output_conv)
                self.add_module(f"adapter_{idx + 1}", lateral_conv)
                self.add_module(f"layer_{idx + 1}", output_conv)
                lateral_convs.append(lateral_conv)
            output_convs.append(output_conv)
        # top-down order: coarsest first
        self.lateral_convs = lateral_convs[::-1]
        self.output_convs = output_convs[::-1]
        self.mask_dim = mask_dim
        self.mask_features = Conv2d(conv_dim, mask_dim, 3, padding=1)
        weight_init.c2_xavier_fill(self.mask_features)

    @classmethod
    def from_config(cls, cfg, input_shape):
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "input_shape": {k: v for k, v in input_shape.items() if k in head.IN_FEATURES},
            "conv_dim": head.CONVS_DIM,
            "mask_dim": head.MASK_DIM,
            "norm": head.NORM,
        }

    def forward_features(self, features):
        y = None
        for idx, name in enumerate(self.in_features[::-1]):
            x = features[name]
            lateral, output = self.lateral_convs[idx], self.output_convs[idx]
            if lateral is None:
                y = output(x)
            else:
                lateral_x = lateral(x)
                y = output(lateral_x + F.interpolate(y, size=lateral_x.shape[-2:], mode="nearest"))
        return self.mask_features(y), None

    def forward(self, features):
        return self.forward_features(features)
