"""Procedural demo data (coloured shapes) and its scorer, used to train the built-in demo model."""

from tools.demo.shapes import (
    BACKGROUNDS,
    COLORS,
    POSITIONS,
    SHAPES,
    SIZES,
    caption,
    eval_prompts,
    parse_prompt,
    render,
    sample_attributes,
)

__all__ = [
    "BACKGROUNDS",
    "COLORS",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "caption",
    "eval_prompts",
    "parse_prompt",
    "render",
    "sample_attributes",
]
