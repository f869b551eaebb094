"""
DeiT-B/16-shaped ViT backbone with key masking inside self-attention (MCC, docs/mcc.md §1.1, §1.2, §14.2).

Built on timm's VisionTransformer, Block and Attention, so the parameter names and shapes are timm's
(patch_embed.proj, cls_token, pos_embed, blocks.i.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2},
norm, head) and a timm / DeiT checkpoint such as `deit_base_patch16_224` loads strictly from a local file.
What is added on top of timm:

* every block's attention takes an optional per-image, per-token key *policy* (1 = masked key): the
  key's logit column gets `-KEY_MASK_VALUE * policy` before the softmax, computed in float32 even under
  autocast (docs/mcc.md §1.2, §15 item 1); masked tokens stay in the sequence as queries;
* the positional embedding is resized bicubically (align_corners=False, no antialias) from the
  pretraining grid to the input's grid at every forward, the CLS entry kept unchanged (docs/mcc.md §1.1);
* the forward returns the final patch-token map (after the final LayerNorm), the CLS token (after the
  final LayerNorm) and the token map of an auxiliary block (before it), the block given relative to the
  depth (docs/mcc.md §1.1, Errata 5).
"""
from functools import partial
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from timm.layers import LayerNorm
from timm.models.vision_transformer import Attention, Block, VisionTransformer

__all__ = [
    "MaskedKeyAttention",
    "MaskableBlock",
    "MaskableViT",
    "add_vit_config",
    "build_vit_backbone",
    "interpolate_pos_embed",
    "resolve_aux_layer",
]

_REMAINDER_MODES = ("error", "floor")


def add_vit_config(cfg):
    """MODEL.VIT keys of `build_vit_backbone`; defaults: DeiT-B/16 as MCC uses it (docs/mcc.md §1.1, §9)."""
    cfg.MODEL.VIT = CN()
    # side of the square patches of the patch-embedding conv (stride = kernel, no padding); output stride
    cfg.MODEL.VIT.PATCH_SIZE = 16
    # token width
    cfg.MODEL.VIT.EMBED_DIM = 768
    # number of transformer blocks
    cfg.MODEL.VIT.DEPTH = 12
    # attention heads per block (head dim = EMBED_DIM / NUM_HEADS; scale head_dim ** -0.5)
    cfg.MODEL.VIT.NUM_HEADS = 12
    # MLP hidden width / EMBED_DIM
    cfg.MODEL.VIT.MLP_RATIO = 4.0
    # bias of the qkv projection (DeiT: True)
    cfg.MODEL.VIT.QKV_BIAS = True
    # eps of every LayerNorm (DeiT / timm: 1e-6)
    cfg.MODEL.VIT.LN_EPS = 1e-6
    # block whose output is the "aux" map: negative = counted from the end (-3 of 12 = block 9, MCC VOC),
    # non-negative = 0-based block index (9, MCC COCO)
    cfg.MODEL.VIT.AUX_LAYER = -3
    # stochastic-depth rate of the last block, linear from 0 (MCC: 0, a deterministic network)
    cfg.MODEL.VIT.DROP_PATH_RATE = 0.0
    # image side the pretrained positional embedding was trained at (its grid = this / PATCH_SIZE)
    cfg.MODEL.VIT.PRETRAIN_IMG_SIZE = 224
    # outputs of the unused classification head, kept so timm/DeiT checkpoints load strictly; 0 = no head
    cfg.MODEL.VIT.HEAD_CLASSES = 1000
    # keep the positional embedding out of training (requires_grad False; MCC: frozen)
    cfg.MODEL.VIT.FREEZE_POS_EMBED = True
    # what is added (negated) to the logit of a masked key before the softmax (MCC: 1e12)
    cfg.MODEL.VIT.KEY_MASK_VALUE = 1e12
    # attention through F.scaled_dot_product_attention (less memory) instead of the explicit softmax of
    # the original; both in float32, equal to about 1e-6
    cfg.MODEL.VIT.FUSED_ATTN = False
    # recompute each block in the backward pass (activation checkpointing) to save memory in training
    cfg.MODEL.VIT.GRAD_CHECKPOINT = False
    # input side not a multiple of PATCH_SIZE: "error", or "floor" (drop the remainder rows / columns,
    # as the original's patch conv does on full-resolution images)
    cfg.MODEL.VIT.REMAINDER = "error"
    # a local timm / DeiT checkpoint (e.g. deit_base_patch16_224's state dict) loaded into the backbone
    # when it is built (strict; MODEL.WEIGHTS, loaded after, holds whole-model checkpoints); "" = none
    cfg.MODEL.VIT.WEIGHTS = ""


def resolve_aux_layer(aux_layer: int, depth: int) -> int:
    """0-based block index of `aux_layer`: negative counts from the end (-3 of depth 12 = 9, of 4 = 1)."""
    if not -depth <= aux_layer < depth:
        raise ValueError(f"MODEL.VIT.AUX_LAYER={aux_layer} is outside [-{depth}, {depth - 1}] for DEPTH={depth}")
    return aux_layer % depth


def interpolate_pos_embed(pos_embed: torch.Tensor, pretrain_grid: Tuple[int, int], grid: Tuple[int, int]) -> torch.Tensor:
    """
    Resize a (1, 1 + gh*gw, C) positional embedding (CLS first) to a (h, w) grid: the patch part
    bicubically (align_corners=False, no antialias), the CLS entry unchanged. Returns (1, 1 + h*w, C);
    at the pretraining grid the table itself.
    """
    gh, gw = pretrain_grid
    if pos_embed.shape[1] != 1 + gh * gw:
        raise ValueError(f"pos_embed has {pos_embed.shape[1]} entries; a {gh}x{gw} grid + CLS needs {1 + gh * gw}")
    if tuple(grid) == (gh, gw):
        return pos_embed
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
    channels = pos_embed.shape[-1]
    patch_pos = patch_pos.reshape(1, gh, gw, channels).permute(0, 3, 1, 2)
    patch_pos = F.interpolate(patch_pos.float(), size=tuple(grid), mode="bicubic", align_corners=False)
    patch_pos = patch_pos.to(pos_embed.dtype).permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], channels)
    return torch.cat([cls_pos, patch_pos], dim=1)


class MaskedKeyAttention(Attention):
    """
    timm's multi-head self-attention with an optional key policy (docs/mcc.md §1.2). Parameters as timm's.

    With `policy` (B, N), 1 = masked: logits (B, heads, N, N) = q kᵀ · scale − KEY_MASK_VALUE · policy[:, None,
    None, :]; softmax over keys. The softmax runs in float32 under autocast too, because the mask value
    overflows fp16 (docs/mcc.md Errata 7). `fused_attn` selects F.scaled_dot_product_attention with the
    same additive bias instead of the explicit product.
    """

    key_mask_value: float = 1e12

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fused_attn = False  # the explicit softmax of the original, unless the backbone asks otherwise

    def forward(self, x: torch.Tensor, policy: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (B, N, C); policy: (B, N) with 1 = masked key, or None. Returns (B, N, C_out)."""
        B, N, _ = x.shape
        gate = self.gate(x).sigmoid() if self.gate is not None else None
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        with torch.autocast(device_type=x.device.type, enabled=False):
            q, k, v = q.float(), k.float(), v.float()
            bias = None
            if policy is not None:
                # (B, 1, 1, N): the same key columns for every head and query
                bias = (policy.to(torch.float32) * -self.key_mask_value)[:, None, None, :]
            if self.fused_attn:
                out = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=bias, dropout_p=self.attn_drop.p if self.training else 0.0
                )
            else:
                attn = (q * self.scale) @ k.transpose(-2, -1)
                if bias is not None:
                    attn = attn + bias
                attn = self.attn_drop(attn.softmax(dim=-1))
                out = attn @ v
        out = out.to(qkv.dtype).transpose(1, 2).reshape(B, N, self.attn_dim)
        out = self.norm(out)
        if gate is not None:
            out = out * gate
        return self.proj_drop(self.proj(out))


class MaskableBlock(Block):
    """timm's pre-norm transformer block whose attention takes the key policy (same submodules as timm's)."""

    def forward(self, x: torch.Tensor, policy: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (B, N, C); policy: (B, N) or None. Returns (B, N, C)."""
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), policy=policy)))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class MaskableViT(VisionTransformer, Backbone):
    """
    timm VisionTransformer (one CLS token) as a detectron2 backbone, with key masking, per-input
    positional-embedding interpolation and an auxiliary block output (docs/mcc.md §1.1, §1.2, §14.2).

    forward(images (B, 3, H, W), policy (B, 1 + h*w) or None) -> {
        "final": (B, C, h, w) patch tokens after the final LayerNorm,
        "aux":   (B, C, h, w) patch tokens output by block `aux_layer`, no final LayerNorm,
        "cls":   (B, C) CLS token after the final LayerNorm,
    } with h, w = H // patch, W // patch (C = embed_dim). The same policy masks the keys of every block.
    """

    @configurable
    def __init__(
        self,
        *,
        in_chans: int = 3,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        ln_eps: float = 1e-6,
        aux_layer: int = -3,
        drop_path_rate: float = 0.0,
        pretrain_img_size: int = 224,
        head_classes: int = 1000,
        freeze_pos_embed: bool = True,
        key_mask_value: float = 1e12,
        fused_attn: bool = False,
        grad_checkpoint: bool = False,
        remainder: str = "error",
    ):
        """
        Args: the MODEL.VIT keys of `add_vit_config` (lower case); `in_chans` the input channels.
        `aux_layer` is relative to `depth` when negative (resolve_aux_layer).
        """
        if remainder not in _REMAINDER_MODES:
            raise ValueError(f"MODEL.VIT.REMAINDER must be one of {_REMAINDER_MODES}, got {remainder!r}")
        if embed_dim % num_heads:
            raise ValueError(f"MODEL.VIT.EMBED_DIM={embed_dim} is not divisible by MODEL.VIT.NUM_HEADS={num_heads}")
        if pretrain_img_size % patch_size:
            raise ValueError(
                f"MODEL.VIT.PRETRAIN_IMG_SIZE={pretrain_img_size} is not a multiple of MODEL.VIT.PATCH_SIZE={patch_size}"
            )
        aux_index = resolve_aux_layer(aux_layer, depth)
        super().__init__(
            img_size=pretrain_img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            num_classes=head_classes,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop_path_rate=drop_path_rate,
            norm_layer=partial(LayerNorm, eps=ln_eps),
            block_fn=MaskableBlock,
            attn_layer=MaskedKeyAttention,
        )
        self.patch_embed.strict_img_size = False  # any multiple of the patch; the grid is checked in forward
        for block in self.blocks:
            block.attn.fused_attn = fused_attn
            block.attn.key_mask_value = float(key_mask_value)
        self.patch_size = patch_size
        self.pretrain_grid = (pretrain_img_size // patch_size,) * 2
        self.aux_index = aux_index
        self.freeze_pos_embed = freeze_pos_embed
        self.remainder = remainder
        self.grad_checkpointing = grad_checkpoint
        self.pos_embed.requires_grad_(not freeze_pos_embed)
        self._out_features = ["final", "aux"]

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec):
        v = cfg.MODEL.VIT
        return {
            "in_chans": input_shape.channels,
            "patch_size": v.PATCH_SIZE,
            "embed_dim": v.EMBED_DIM,
            "depth": v.DEPTH,
            "num_heads": v.NUM_HEADS,
            "mlp_ratio": v.MLP_RATIO,
            "qkv_bias": v.QKV_BIAS,
            "ln_eps": v.LN_EPS,
            "aux_layer": v.AUX_LAYER,
            "drop_path_rate": v.DROP_PATH_RATE,
            "pretrain_img_size": v.PRETRAIN_IMG_SIZE,
            "head_classes": v.HEAD_CLASSES,
            "freeze_pos_embed": v.FREEZE_POS_EMBED,
            "key_mask_value": v.KEY_MASK_VALUE,
            "fused_attn": v.FUSED_ATTN,
            "grad_checkpoint": v.GRAD_CHECKPOINT,
            "remainder": v.REMAINDER,
        }

    # ------------------------------------------------------------------ detectron2 Backbone
    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {name: ShapeSpec(channels=self.embed_dim, stride=self.patch_size) for name in self._out_features}

    @property
    def size_divisibility(self) -> int:
        # no padding to the patch: the original runs on the unpadded image (docs/mcc.md §14.2)
        return 0

    # ------------------------------------------------------------------ pieces of the forward
    def grid_size(self, height: int, width: int) -> Tuple[int, int]:
        """Token grid (h, w) of an input of height x width; REMAINDER "error" rejects non-multiples."""
        p = self.patch_size
        if height < p or width < p:
            raise ValueError(f"input {height}x{width} is smaller than one {p}x{p} patch (MODEL.VIT.PATCH_SIZE)")
        if (height % p or width % p) and self.remainder == "error":
            raise ValueError(
                f"input {height}x{width} is not a multiple of MODEL.VIT.PATCH_SIZE={p}; crop/pad it, or set "
                f'MODEL.VIT.REMAINDER "floor" to drop the last {height % p} rows / {width % p} columns'
            )
        return height // p, width // p

    def embed(self, images: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """images (B, 3, H, W) -> tokens (B, 1 + h*w, C) (CLS first, positional embedding added), (h, w)."""
        if images.dim() != 4 or images.shape[1] != self.patch_embed.proj.in_channels:
            raise ValueError(
                f"images must be (B, {self.patch_embed.proj.in_channels}, H, W), got {tuple(images.shape)}"
            )
        h, w = self.grid_size(images.shape[-2], images.shape[-1])
        p = self.patch_size
        # cropping to whole patches gives the same tokens as the unpadded conv's floor
        x = self.patch_embed(images[..., : h * p, : w * p])
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + interpolate_pos_embed(self.pos_embed, self.pretrain_grid, (h, w))
        return self.norm_pre(self.pos_drop(x)), (h, w)

    def check_policy(self, policy: torch.Tensor, batch: int, num_tokens: int) -> torch.Tensor:
        """Validate a key policy: (B, 1 + h*w), entries 0/1 (bool or float), CLS (index 0) never masked."""
        if policy.shape != (batch, num_tokens):
            raise ValueError(
                f"policy must be (B, 1 + h*w) = ({batch}, {num_tokens}) (1 = masked key), got {tuple(policy.shape)}"
            )
        if bool(policy[:, 0].any()):
            raise ValueError("policy masks the CLS key (policy[:, 0] != 0): a query would have no key left")
        return policy

    def forward_tokens(
        self, x: torch.Tensor, policy: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Run the blocks on embedded tokens x (B, T, C) with an optional key policy (B, T).
        Returns (all tokens after the final LayerNorm (B, T, C), tokens output by the aux block (B, T, C)).
        """
        if policy is not None:
            policy = self.check_policy(policy, x.shape[0], x.shape[1])
        aux = None
        for i, block in enumerate(self.blocks):
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, policy, use_reentrant=False)
            else:
                x = block(x, policy=policy)
            if i == self.aux_index:
                aux = x
        return self.norm(x), aux

    def forward(self, images: torch.Tensor, policy: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """images (B, 3, H, W) normalised; policy (B, 1 + h*w) or None. See the class docstring for outputs."""
        x, (h, w) = self.embed(images)
        final, aux = self.forward_tokens(x, policy)

        def to_map(tokens):
            return tokens[:, 1:].transpose(1, 2).reshape(tokens.shape[0], self.embed_dim, h, w)

        return {"final": to_map(final), "aux": to_map(aux), "cls": final[:, 0]}

    # ------------------------------------------------------------------ weights
    def load_pretrained(self, path: str, strict: bool = True):
        """
        Load a timm / DeiT checkpoint from a local file: a state dict, or one under "model" / "state_dict"
        (the DeiT release), "module." prefixes stripped. Keeps the positional embedding frozen if asked.
        A missing or unreadable file, or a tensor of another shape (a positional table for another
        PRETRAIN_IMG_SIZE, another PATCH_SIZE or width), fails naming the file, the key and both shapes.
        Returns load_state_dict's result.
        """
        import os

        if not os.path.isfile(path):
            raise FileNotFoundError(f"ViT weights {path} (MODEL.VIT.WEIGHTS) do not exist")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"ViT weights {path} (MODEL.VIT.WEIGHTS) cannot be read as a torch checkpoint: {e}") from e
        for key in ("model", "state_dict"):
            if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                state = state[key]
                break
        if not isinstance(state, dict):
            raise ValueError(f"ViT weights {path} (MODEL.VIT.WEIGHTS) hold a {type(state).__name__}, not a state dict")
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
        own = self.state_dict()
        wrong = [
            f"{k}: {tuple(v.shape)} in the file, {tuple(own[k].shape)} in the model"
            for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)
        ]
        if wrong:
            raise ValueError(
                f"ViT weights {path} do not fit MODEL.VIT (PATCH_SIZE={self.patch_size}, EMBED_DIM={self.embed_dim}, "
                f"PRETRAIN_IMG_SIZE={self.pretrain_grid[0] * self.patch_size}): " + "; ".join(wrong[:5])
            )
        result = self.load_state_dict(state, strict=strict)
        self.pos_embed.requires_grad_(not self.freeze_pos_embed)
        return result


@BACKBONE_REGISTRY.register()
def build_vit_backbone(cfg, input_shape: ShapeSpec):
    """MaskableViT of cfg.MODEL.VIT (outputs "final", "aux" at stride PATCH_SIZE, and "cls"), with the
    weights of MODEL.VIT.WEIGHTS when set."""
    backbone = MaskableViT(cfg, input_shape)
    if cfg.MODEL.VIT.WEIGHTS:
        backbone.load_pretrained(cfg.MODEL.VIT.WEIGHTS)
    return backbone
