"""Prompts: descriptions rendered into templates, and prompt-ensemble text embeddings.

Each attribute's description is rendered into every template (the vocabulary's, or the
attribute's own), and each of its translations into its language's templates (multilingual
text towers: one ensemble across languages). With several templates the text embeddings are a prompt ensemble, as in
CLIP's zero-shot recipe: normalise each, average, normalise again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Protocol, Sequence

from columnist.vectors import l2_normalise
from columnist.vocab.schema import Attribute, Vocabulary

if TYPE_CHECKING:
    import numpy as np


class TextEncoder(Protocol):
    """What prompts need of a model: its text tower (models.encoder.Encoder is one)."""

    dim: int
    reads_language: bool
    """Whether the text tower reads a language code with each text (NLLB)."""

    def encode_texts(self, texts: Sequence[str]) -> "np.ndarray": ...

    def encode_texts_in(self, texts: Sequence[str], language: str | None) -> "np.ndarray": ...


def render_prompts(vocab: Vocabulary, attribute: Attribute) -> list[str]:
    """The prompt texts for one attribute: its description in every template, then each
    translation in its language's templates (the bare text where the language has none)."""
    return [text for _, text in language_prompts(vocab, attribute)]


def language_prompts(vocab: Vocabulary, attribute: Attribute) -> list[tuple[str | None, str]]:
    """(language, prompt) in render_prompts' order; None for the description's own language."""
    prompts: list[tuple[str | None, str]] = [(None, t.format(description=attribute.description))
                                             for t in vocab.templates_for(attribute)]
    for language, text in attribute.translations.items():
        templates = vocab.templates_by_language.get(language) or ["{description}"]
        prompts += [(language, t.format(description=text)) for t in templates]
    return prompts


def ensemble(embeddings: "np.ndarray") -> "np.ndarray":
    """One direction from several prompts' embeddings: normalise each, average, normalise."""
    return l2_normalise(l2_normalise(embeddings).mean(axis=0))


def prompt_ensemble(encoder: TextEncoder, prompts: Sequence[str]) -> "np.ndarray":
    return ensemble(encoder.encode_texts(prompts))


def text_embeddings(
    encoder: TextEncoder, vocab: Vocabulary, codes: Iterable[str] | None = None
) -> dict[str, "np.ndarray"]:
    """One unit-length text embedding per base attribute (all of them, or ``codes``).

    All prompts go through the text tower in one call; each attribute then averages its own.
    """
    wanted = set(codes) if codes is not None else None
    attributes = [a for a in vocab.attributes if wanted is None or a.code in wanted]
    prompts = {a.code: language_prompts(vocab, a) for a in attributes}
    flat = [p for a in attributes for p in prompts[a.code]]
    if not flat:
        return {}
    encoded = _encode(encoder, flat)
    out, start = {}, 0
    for attribute in attributes:
        count = len(prompts[attribute.code])
        out[attribute.code] = ensemble(encoded[start:start + count])
        start += count
    return out


def _encode(encoder: TextEncoder, prompts: list[tuple[str | None, str]]) -> "np.ndarray":
    """The prompts' embeddings in order: in one call, or one per language for an encoder that
    reads a language code with each text (``reads_language``, ``encode_texts_in``: NLLB)."""
    import numpy as np

    languages = {language for language, _ in prompts}
    if not encoder.reads_language or languages == {None}:
        return encoder.encode_texts([text for _, text in prompts])
    out = np.zeros((len(prompts), encoder.dim), np.float32)
    for language in languages:
        rows = [i for i, (each, _) in enumerate(prompts) if each == language]
        out[rows] = encoder.encode_texts_in([prompts[i][1] for i in rows], language)
    return out
