"""Small helpers shared by the library and its tools."""
from .json_io import json_safe, write_json
