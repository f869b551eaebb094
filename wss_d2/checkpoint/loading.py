"""
Strict weight loading for evaluation and export. detectron2's checkpointer only logs a
warning for missing, unexpected or mis-shaped parameters and goes on with random weights,
which silently turns a wrong checkpoint into a meaningless evaluation.
"""
from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["CheckpointMismatchError", "load_weights_strict"]

MAX_LISTED = 10


class CheckpointMismatchError(ValueError):
    """A checkpoint whose parameters do not match the model's."""


def _listed(keys):
    keys = sorted(keys)
    shown = ", ".join(keys[:MAX_LISTED])
    return shown + (f", ... ({len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else "")


def load_weights_strict(model, path):
    """
    Load `path` (any format detectron2's checkpointer reads: .pth, .pkl, URLs) into `model`.
    Raises CheckpointMismatchError naming the file and the mismatched keys when a model
    parameter or buffer is missing from the checkpoint, the checkpoint has parameters the
    model lacks, or shapes differ.
    """
    checkpointer = DetectionCheckpointer(model)
    checkpoint = checkpointer._load_file(checkpointer.path_manager.get_local_path(path))
    weights = checkpoint.get("model", checkpoint)
    if checkpoint.get("matching_heuristics", False) or checkpoint.get("__author__") == "Caffe2":
        # converted third-party weights: detectron2 renames them on load; let it, then verify
        checkpointer.load(path)
        return checkpoint
    expected = model.state_dict()
    missing = set(expected) - set(weights)
    unexpected = set(weights) - set(expected)
    mis_shaped = [
        f"{k} (checkpoint {tuple(weights[k].shape)}, model {tuple(expected[k].shape)})"
        for k in set(expected) & set(weights)
        if tuple(weights[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if mis_shaped:
        problems.append(f"shapes differ for {_listed(mis_shaped)}")
    if missing:
        problems.append(f"missing from the checkpoint: {_listed(missing)}")
    if unexpected:
        problems.append(f"not in the model: {_listed(unexpected)}")
    if problems:
        raise CheckpointMismatchError(
            f"Checkpoint {path} does not fit the model ({type(model).__name__}): " + "; ".join(problems)
            + ". Check MODEL.* in the config (e.g. NUM_CLASSES, RESNETS.DEPTH) against the run that saved it."
        )
    checkpointer.load(path, checkpointables=[])
    return checkpoint
