"""icl_kit: learn which in-context demonstrations to show a vision-language model."""

__version__ = "0.1.0"
