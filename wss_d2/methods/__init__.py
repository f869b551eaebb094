"""The weakly supervised methods, one folder each; importing registers their meta-architectures."""
from . import agmm, irn, mcc, simformer, sipe, spml  # noqa: F401
