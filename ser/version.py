"""ser's version (a leaf: model cards record it)."""

__version__ = "0.1.0"
