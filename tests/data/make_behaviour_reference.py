"""
Write tests/data/behaviour_reference.pt, the pinned SIPE and AGMM behaviour that
tests/test_behaviour_unchanged.py compares against bit for bit.

Regenerate only when a behaviour change is intended (and say so in the change):
    PYTHONPATH=. python tests/data/make_behaviour_reference.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from tests.test_behaviour_unchanged import CASES, REFERENCE, behaviour  # noqa: E402

if __name__ == "__main__":
    torch.save({method: behaviour(method) for method in sorted(CASES)}, REFERENCE)
    print(f"wrote {REFERENCE} ({os.path.getsize(REFERENCE)} bytes)")
