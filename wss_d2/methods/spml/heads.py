"""SPML's softmax classifier head (docs/spml.md §5.4), used as the stage-A auxiliary head and the stage-C head."""
from torch import nn
from torch.nn import functional as F

from detectron2.layers import Conv2d, get_norm

__all__ = ["SPMLClassifierHead"]


class SPMLClassifierHead(nn.Module):
    """
    On the L2-normalised embedding ê (B, D, H, W): conv3x3 D -> 2D (no bias) + BN + ReLU, dropout
    (stage A 0.75, stage C 0.65), conv1x1 2D -> K (with bias). Returns (B, K, H, W) logits at the
    input's resolution. BN at PyTorch's momentum 0.1; PyTorch's default init.
    """

    def __init__(self, embed_dim: int, num_classes: int, dropout: float = 0.75, norm: str = "BN"):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"SPML classifier dropout must be in [0, 1), got {dropout}")
        hidden = 2 * embed_dim
        self.conv = Conv2d(embed_dim, hidden, 3, padding=1, bias=False, norm=get_norm(norm, hidden), activation=F.relu)
        self.dropout = nn.Dropout(dropout)
        self.predictor = nn.Conv2d(hidden, num_classes, 1, bias=True)
        self.embed_dim = embed_dim
        self.num_classes = num_classes

    def forward(self, unit_embedding):
        return self.predictor(self.dropout(self.conv(unit_embedding)))
