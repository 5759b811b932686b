"""Vocabularies: the YAML schema, prompts, scoring maths, derived rules and diffs."""

from pathlib import Path

BUILTIN_DIR = Path(__file__).parent


def builtin_vocabulary_path(name: str = "space") -> Path:
    """Path of a vocabulary that ships with columnist (``vocab/NAME.yaml``)."""
    return BUILTIN_DIR / f"{name}.yaml"
