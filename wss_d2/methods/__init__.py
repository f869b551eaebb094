"""The weakly supervised methods, one folder each; importing registers their meta-architectures."""
from . import agmm, irn, sipe, spml  # noqa: F401
