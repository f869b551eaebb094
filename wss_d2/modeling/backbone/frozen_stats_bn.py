"""BatchNorm with frozen statistics but trainable affine parameters (SIPE, docs/sipe.md §2.1)."""
import torch.nn.functional as F
from torch import nn

__all__ = ["FrozenStatsBatchNorm2d", "resolve_norm"]


class FrozenStatsBatchNorm2d(nn.BatchNorm2d):
    """
    Always normalises with the stored running mean/var (eval-mode BN, even under
    `model.train()`), so the ImageNet statistics never drift with small weakly supervised
    batches; γ and β stay parameters and train wherever gradients reach them. detectron2's
    FrozenBatchNorm2d would freeze γ/β too. Subclassing BatchNorm2d keeps checkpoint keys,
    detectron2's `WEIGHT_DECAY_NORM` rule and `FREEZE_AT` conversion working unchanged.
    """

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


def resolve_norm(name):
    """MODEL.RESNETS.NORM: "FrozenStatsBN", or any name detectron2's get_norm knows."""
    return FrozenStatsBatchNorm2d if name == "FrozenStatsBN" else name
