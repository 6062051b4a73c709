"""Field helpers of the params dataclasses: a default with its help text, a nested section."""

from __future__ import annotations

from dataclasses import field
from typing import Any


def opt(default: Any, help: str, **rules: Any) -> Any:
    """A field with a default, a help text and optional rules (`min`, `max`)."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **rules})
    return field(default=default, metadata={"help": help, **rules})


def section(cls: type) -> Any:
    """A nested section field whose default is the section's defaults."""
    return field(default_factory=cls, metadata={"help": (cls.__doc__ or "").strip()})
