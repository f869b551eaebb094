from .crf import CRFJob, DenseCRF, DenseCRFPool  # noqa: F401
from .scores import (  # noqa: F401
    SEM_SEG_KINDS, model_sem_seg_kind, output_sem_seg_kind, to_probabilities,
)
from .tta import (  # noqa: F401
    SemanticSegmentorWithTTA, maybe_wrap_with_tta, sliding_window_inference, tile_starts,
)
