"""
Strict weight loading for evaluation and export. detectron2's checkpointer only logs a
warning for missing, unexpected or mis-shaped parameters (also for .pkl weights converted by
name-matching heuristics) and goes on with random weights, which silently turns a wrong
checkpoint into a meaningless evaluation.
"""
from .checkpointer import WSSCheckpointer

__all__ = ["load_weights_strict"]


def load_weights_strict(model, path, source="MODEL.WEIGHTS"):
    """
    Load `path` (any format detectron2's checkpointer reads: .pth, .pkl, URLs) into `model`.
    Raises CheckpointMismatchError naming the file and the mismatched keys when a model
    parameter or buffer is not loaded (missing, or of another shape), or the checkpoint has
    parameters the model lacks; CheckpointReadError naming the file when it is missing or
    cannot be read. `source` (the config key or flag that named the file) goes in the messages.
    """
    if not path:
        raise ValueError(
            f"No weights to load: {source} is empty. Give the checkpoint to evaluate, e.g. "
            f"{source} output/<run>/model_final.pth"
        )
    return WSSCheckpointer(model).load_verified(path, verify="strict", source=source, checkpointables=[])
