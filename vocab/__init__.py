"""Vocabularies: the YAML schema, prompts, scoring maths, derived rules and diffs."""

from pathlib import Path

BUILTIN_DIR = Path(__file__).parent


def builtin_vocabulary_path(name: str = "space") -> Path:
    """Path of a vocabulary that ships with columnist (``vocab/NAME.yaml``)."""
    return BUILTIN_DIR / f"{name}.yaml"


def load_vocabulary_arg(name_or_path: str):
    """A YAML file path, or the name of a built-in vocabulary ('space'); raises VocabularyError."""
    from columnist.lookup import name_or_path as lookup
    from columnist.vocab.schema import load_vocabulary

    found = lookup(name_or_path, [BUILTIN_DIR], Path.is_file, suffix=".yaml")
    return load_vocabulary(found or Path(name_or_path))
