"""Descriptions in several languages: one prompt ensemble across them, for multilingual text towers."""

import numpy as np
import pytest

from columnist.models.mock import MockEncoder
from columnist.vocab.diff import diff_vocabularies
from columnist.vocab.prompts import ensemble, render_prompts, text_embeddings
from columnist.vocab.schema import VocabularyError, parse_vocabulary

DOC = """
name: multi
version: {version}
templates: ["a photo of {{description}}"]
templates_by_language:
  de: ["ein Foto von {{description}}"]
attributes:
  - code: moon
    description: the Moon
    translations: {{de: "der Mond", fr: "{fr}"}}
  - code: earth
    description: the Earth
"""


def vocab(version=1, fr="la Lune"):
    return parse_vocabulary(DOC.format(version=version, fr=fr))


def test_translations_join_the_ensemble_in_their_languages_templates():
    v = vocab()
    assert render_prompts(v, v.entry("moon")) == ["a photo of the Moon", "ein Foto von der Mond", "la Lune"]
    encoder = MockEncoder()
    expected = ensemble(encoder.encode_texts(render_prompts(v, v.entry("moon"))))
    np.testing.assert_allclose(text_embeddings(encoder, v)["moon"], expected, atol=1e-6)


def test_a_changed_translation_rescores_that_attribute_only_and_old_hashes_hold():
    diff = diff_vocabularies(vocab(1), vocab(2, fr="la lune (astre)"))
    assert set(diff.rescore) == {"moon"}
    renamed = parse_vocabulary(DOC.format(version=2, fr="la Lune").replace("fr:", "nl:"))
    assert set(diff_vocabularies(vocab(1), renamed).rescore) == {"moon"}  # same text, read as another language
    plain = parse_vocabulary("name: p\nversion: 1\nattributes: [{code: a, description: x}]")
    same = parse_vocabulary("name: p\nversion: 1\ntemplates_by_language: {}\n"
                            "attributes: [{code: a, description: x, translations: {}}]")
    assert plain.content_hash() == same.content_hash()  # documents from before languages keep their hash


@pytest.mark.parametrize("translations, problem", [
    ('{"Deutsch!": "Mond"}', "is not a language code"),
    ('{"de\\n": "Mond"}', "is not a language code"),
    ('{de: "  "}', "must not be empty"),
    ('{de: "\\u200b"}', "must not be empty"),
])
def test_bad_translations_are_named(translations, problem):
    with pytest.raises(VocabularyError, match=problem) as info:
        parse_vocabulary(f"name: p\nversion: 1\nattributes: [{{code: moon, description: x, translations: {translations}}}]")
    assert "moon" in str(info.value)


def test_a_vocabulary_rendering_too_many_prompts_is_refused():
    languages = {f"l{chr(97 + i // 26)}{chr(97 + i % 26)}": "x" for i in range(50)}
    templates = {language: [f"{{description}} {n}" for n in range(50)] for language in languages}
    document = {"name": "bomb", "version": 1, "templates_by_language": templates,
                "attributes": [{"code": f"a{i}", "description": "x", "translations": languages} for i in range(5)]}
    from columnist.vocab.schema import vocabulary_from_dict

    with pytest.raises(VocabularyError, match="render 12,505 prompts"):
        vocabulary_from_dict(document)


def test_a_two_letter_key_must_be_a_language():
    import pytest

    from columnist.vocab.schema import VocabularyError, vocabulary_from_dict

    with pytest.raises(VocabularyError, match="'zz' is not a language"):
        vocabulary_from_dict({"name": "m", "version": 1, "attributes": [
            {"code": "moon", "description": "the moon", "translations": {"zz": "la lune"}}]})
    vocabulary_from_dict({"name": "m", "version": 1, "attributes": [
        {"code": "moon", "description": "the moon", "translations": {"pt-BR": "a lua", "deu_Latn": "der Mond"}}]})
