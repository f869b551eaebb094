"""Loading weights with a clear error when a checkpoint does not fit the model."""
from .loading import CheckpointMismatchError, load_weights_strict
