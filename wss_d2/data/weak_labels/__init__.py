"""Readers, writers and rasterisers of weak labels (one module per kind)."""
from .kinds import LABEL_MAP_KINDS, SCATTERED_KINDS, SIMULATED_KINDS, SPARSE_KINDS, WEAK_LABEL_KINDS
from .boxes import (
    boxes_from_label_map,
    rasterize_boxes,
    read_voc_xml,
    voc_boxes_to_annotations,
    write_voc_xml,
)
from .points import draw_discs, drop_points_outside, load_whats_the_point, rasterize_points
from .scribbles import SCRIBBLESUP_TAGS, rasterize_scribbles, read_scribblesup_xml
from .tags import load_image_tags, normalize_voc_image_id, tags_from_label_map, write_image_tags
from .cams import read_irn_cams, write_irn_cams
