"""g2l: distil a giga-scale pathology foundation model into a cancer-specific student."""

__version__ = "0.1.0"
