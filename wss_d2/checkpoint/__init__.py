"""Checkpoints: atomic finite-only writes, named read errors, verified loading, safe resume."""
from .checkpointer import (
    CheckpointMismatchError,
    CheckpointReadError,
    NonFiniteCheckpointError,
    WSSCheckpointer,
    non_finite_tensors,
)
from .loading import load_weights_strict
