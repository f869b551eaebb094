"""
MCC's own heads (docs/mcc.md §1.3): the DINO-style projection head of the CLS token and the EMA update
of its teacher copy. The LargeFOV segmentation head is shared: wss_d2.modeling.heads.LargeFOV.
"""
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["ProjectionHead", "ema_update"]


class ProjectionHead(nn.Module):
    """
    Linear -> GELU -> Linear -> GELU -> Linear to the bottleneck, L2 normalisation, then a
    weight-normalised Linear without bias whose row norms are fixed to 1 (the magnitude is not
    trained), so each output is the cosine between the bottleneck vector and one row.
    The MLP's Linears start as truncated normal (std 0.02) with zero bias; the last layer's
    direction keeps PyTorch's default Linear initialisation.
    """

    def __init__(self, in_dim: int, out_dim: int = 1024, hidden_dim: int = 2048, bottleneck_dim: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        magnitude = self.last_layer.parametrizations.weight.original0
        magnitude.data.fill_(1.0)
        magnitude.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.normalize(self.mlp(x), dim=-1, p=2)
        return self.last_layer(x)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """θ_teacher <- momentum·θ_teacher + (1 − momentum)·θ_student for every parameter (same order)."""
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.mul_(momentum).add_(s.detach(), alpha=1.0 - momentum)
