"""MaskFormer's semantic inference (docs/maskformer.md §4)."""
import torch
from torch.nn import functional as F

__all__ = ["semantic_inference"]


def semantic_inference(mask_cls, mask_pred):
    """
    (K, H, W) class scores sem[c, x] = Σ_q softmax(l_q)[c] · σ(m_q(x)) from the class logits (Q, K+1)
    and mask logits (Q, H, W) of one image; "no object" is dropped without renormalising.
    """
    probs = F.softmax(mask_cls, dim=-1)[..., :-1]
    return torch.einsum("qc,qhw->chw", probs, mask_pred.sigmoid())
