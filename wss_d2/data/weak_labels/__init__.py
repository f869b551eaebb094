"""Readers of weak labels (one module per kind)."""
from .tags import load_image_tags, normalize_voc_image_id
