from .crf import CRFJob, DenseCRF, DenseCRFPool  # noqa: F401
from .tta import (  # noqa: F401
    SemanticSegmentorWithTTA, maybe_wrap_with_tta, sliding_window_inference, tile_starts,
)
