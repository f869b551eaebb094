"""Small helpers shared by the library and its tools."""
from .atomic_folder import check_replaceable, move_into_place, staging_folder
from .json_io import json_safe, write_json
