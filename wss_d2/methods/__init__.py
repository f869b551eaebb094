"""The weakly supervised methods, one folder each."""
