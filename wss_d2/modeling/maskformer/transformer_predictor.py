"""
MaskFormer's transformer predictors, in their own registry (MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME).

`TransformerPredictor` (docs/maskformer.md §1): the transformer's input feature (res5 by default)
through a 1x1 `input_proj` to HIDDEN_DIM when the widths differ, the sine position encoding, the DETR
transformer with NUM_OBJECT_QUERIES learned query embeddings, then per decoder layer the class logits
(`class_embed`, K + 1 with the last "no object") and the mask embeddings (`mask_embed`, a 3-layer
MLP) whose dot products with the per-pixel embeddings are the mask logits.
"""
import fvcore.nn.weight_init as weight_init
import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import Conv2d
from detectron2.utils.registry import Registry

from .position_encoding import PositionEmbeddingSine
from .transformer import Transformer

__all__ = ["TRANSFORMER_PREDICTOR_REGISTRY", "MLP", "TransformerPredictor", "build_transformer_predictor"]

TRANSFORMER_PREDICTOR_REGISTRY = Registry("WSS_MASKFORMER_TRANSFORMER_PREDICTOR")
TRANSFORMER_PREDICTOR_REGISTRY.__doc__ = """
MaskFormer transformer predictors: `predictor(cfg, in_channels)`; forward(x, mask_features) returns
{"pred_logits" (B, Q, K+1), "pred_masks" (B, Q, h, w), "aux_outputs": [...] of the earlier layers}.
"""


def build_transformer_predictor(cfg, in_channels):
    return TRANSFORMER_PREDICTOR_REGISTRY.get(cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME)(cfg, in_channels)


class MLP(nn.Module):
    """`num_layers` linear layers with ReLU between them (not after the last)."""

    def __init__(self, input_dim, hidden_dim, output_dim, num_layers):
        super().__init__()
        dims = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip([input_dim] + dims, dims + [output_dim]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = F.relu(layer(x)) if i < len(self.layers) - 1 else layer(x)
        return x


@TRANSFORMER_PREDICTOR_REGISTRY.register()
class TransformerPredictor(nn.Module):
    @configurable
    def __init__(self, in_channels, *, num_classes, hidden_dim=256, num_queries=100, nheads=8, dropout=0.1,
                 dim_feedforward=2048, enc_layers=0, dec_layers=6, pre_norm=False, deep_supervision=True,
                 mask_dim=256, enforce_input_project=False):
        super().__init__()
        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)
        self.transformer = Transformer(d_model=hidden_dim, nhead=nheads, num_encoder_layers=enc_layers,
                                       num_decoder_layers=dec_layers, dim_feedforward=dim_feedforward,
                                       dropout=dropout, normalize_before=pre_norm,
                                       return_intermediate_dec=deep_supervision)
        self.num_queries = num_queries
        self.num_classes = num_classes
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        if in_channels != hidden_dim or enforce_input_project:
            self.input_proj = Conv2d(in_channels, hidden_dim, kernel_size=1)
            weight_init.c2_xavier_fill(self.input_proj)
        else:
            self.input_proj = nn.Sequential()
        self.aux_loss = deep_supervision
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    @classmethod
    def from_config(cls, cfg, in_channels):
        mf = cfg.MODEL.MASK_FORMER
        return {
            "in_channels": in_channels,
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "hidden_dim": mf.HIDDEN_DIM,
            "num_queries": mf.NUM_OBJECT_QUERIES,
            "nheads": mf.NHEADS,
            "dropout": mf.DROPOUT,
            "dim_feedforward": mf.DIM_FEEDFORWARD,
            "enc_layers": mf.ENC_LAYERS,
            "dec_layers": mf.DEC_LAYERS,
            "pre_norm": mf.PRE_NORM,
            "deep_supervision": mf.DEEP_SUPERVISION,
            "mask_dim": cfg.MODEL.SEM_SEG_HEAD.MASK_DIM,
            "enforce_input_project": mf.ENFORCE_INPUT_PROJ,
        }

    def forward(self, x, mask_features):
        pos = self.pe_layer(x)
        hs, _ = self.transformer(self.input_proj(x), None, self.query_embed.weight, pos)
        outputs_class = self.class_embed(hs)  # (L, B, Q, K+1)
        outputs_masks = torch.einsum("lbqc,bchw->lbqhw", self.mask_embed(hs), mask_features)
        out = {"pred_logits": outputs_class[-1], "pred_masks": outputs_masks[-1]}
        out["aux_outputs"] = [{"pred_logits": c, "pred_masks": m} for c, m in zip(outputs_class[:-1], outputs_masks[:-1])]
        return out
