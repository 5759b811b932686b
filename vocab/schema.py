"""The vocabulary document: what a YAML vocabulary may say, and every way it can be wrong.

Field shapes are checked by pydantic; the checks that span entries (duplicate codes,
derived rules naming unknown codes, cycles) run afterwards. Every problem becomes one line
of a VocabularyError that names the file, the entry (index and code) and what is wrong, so
a person editing YAML can fix it without reading code.
"""

from __future__ import annotations

import hashlib
import json
import keyword
import re
import unicodedata
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from columnist.errors import ConfigurationError
from columnist.records import ModelCalibration
from columnist.vocab.rules import RuleError, parse_rule, references

CODE_PATTERN = r"^[a-z][a-z0-9_]*$"
RESERVED_CODES = {
    "and", "or", "not",
    # column names of the tables and views that attribute codes become columns beside
    "image_id", "attribute", "score", "logit", "source", "model", "vocab_name", "vocab_version", "updated_at",
    "collection", "uri", "ingested_at", "width", "height", "sha256", "embedding", "bucket", "created_at",
    "present", "rule_value",  # aliases inside the replay statements
}
DEFAULT_TEMPLATES = ["a photo of {description}"]
MAX_VERSION = 2**32 - 1  # vocab_version is a UInt32 column
MAX_LANGUAGES = 50
MAX_PROMPTS = 10_000
LANGUAGE = re.compile(r"[a-z]{2,3}([_-][A-Za-z]{2,8}){0,2}")
ISO_639_1 = set("""aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy
da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii
ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms
mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn
so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu""".split())
"""Two-letter language codes (ISO 639-1): a two-letter key outside it is a typo, not a language."""
MAX_TEXT = 1_000  # characters of a description, template or rule (CLIP reads 77 tokens)
MAX_ENTRIES = 2_000
MAX_PROMPT_CHARS = 1_500
"""Longest rendered prompt (a description or translation in a template): about four times
what a 77-token context holds. A template may repeat {description} as often as fits in 1,000
characters: 76 times a 1,000-character description is a 76,000-character prompt."""
MAX_RENDERED_CHARS = 2_000_000
"""Every rendered prompt of a document together: what the tokenizer reads on a change."""
MAX_LISTED = 8
"""Problems of one kind listed by name before the rest are counted."""


class VocabularyError(ConfigurationError, ValueError):
    """An invalid vocabulary; ``problems`` holds one message per problem."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid vocabulary\n" + "\n".join(f"  - {p}" for p in problems))


class _Strict(BaseModel):
    # NaN or infinity in a centre, scale or threshold would be stored as NaN scores
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Calibration(_Strict):
    """Sigmoid centre and scale in logit units: score = sigmoid((logit - centre) / scale)."""

    centre: float = 25.0
    scale: float = Field(2.5, gt=0)
    source: Optional[str] = Field(None, max_length=300)
    """How they were chosen, e.g. 'labelled fit: 120 labels, log-loss 0.41' (written by
    `columnist calibrate --write`); stored with every applied version."""


class CalibrationOverride(_Strict):
    centre: Optional[float] = None
    scale: Optional[float] = Field(None, gt=0)
    source: Optional[str] = Field(None, max_length=300)


class Thresholds(_Strict):
    """Scores at or above ``accept`` are accepted, at or below ``reject`` rejected."""

    accept: float = Field(0.8, ge=0, le=1)
    reject: float = Field(0.2, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self):
        if self.reject >= self.accept:
            raise ValueError(f"reject ({self.reject}) must be below accept ({self.accept})")
        return self


class ThresholdsOverride(_Strict):
    accept: Optional[float] = Field(None, ge=0, le=1)
    reject: Optional[float] = Field(None, ge=0, le=1)


def _check_templates(templates: Optional[list[str]]) -> Optional[list[str]]:
    if templates is None:
        return None
    if not templates:
        raise ValueError("must list at least one template")
    if len(templates) > 50:
        raise ValueError(f"{len(templates)} templates; at most 50")
    for template in templates:
        check_template(template)
    return templates


def _check_language(language: str) -> None:
    if not isinstance(language, str) or not LANGUAGE.fullmatch(language):
        raise ValueError(f"{language[:40]!r} is not a language code (like 'de', 'pt-BR' or 'deu_Latn')")
    base = re.split(r"[_-]", language)[0]
    if len(base) == 2 and base not in ISO_639_1:
        raise ValueError(f"{language!r} is not a language: {base!r} is no ISO 639-1 code (like 'de', 'fr', 'pt-BR')")


def _check_translations(translations: dict[str, str]) -> dict[str, str]:
    cleaned = {}
    for language, text in translations.items():
        _check_language(language)
        if not any(character.isalnum() for character in text):
            raise ValueError(f"translation {language!r} must not be empty (it has no letter or digit)")
        if len(text) > MAX_TEXT:
            raise ValueError(f"translation {language!r} is longer than {MAX_TEXT} characters")
        cleaned[language] = " ".join(text.split())
    return cleaned


def check_template(template: str) -> None:
    """Exactly the placeholder ``{description}`` (once or more), nothing else: other names
    would fail when rendered, and ``{{description}}`` is an escaped brace, not a placeholder."""
    from string import Formatter

    if len(template) > MAX_TEXT:
        raise ValueError(f"template of {len(template)} characters; at most {MAX_TEXT}")
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in Formatter().parse(template)
                  if name is not None]
    except ValueError as err:
        raise ValueError(f"template {template!r}: {err} (write a literal brace as {{{{ or }}}})") from None
    others = sorted({name or "{}" for name, _, _ in fields if name != "description"})
    if others:
        raise ValueError(f"template {template!r} has unknown placeholder(s) {', '.join(others)}; "
                         "only {description} is filled in")
    if any(spec or conversion for _, spec, conversion in fields):
        raise ValueError(f"template {template!r}: write the placeholder as plain {{description}}")
    if not fields:
        raise ValueError(f"template {template!r} has no {{description}} placeholder")


class _Entry(_Strict):
    code: str = Field(pattern=CODE_PATTERN, max_length=64)
    label: str = Field("", max_length=MAX_TEXT)
    thresholds: ThresholdsOverride = ThresholdsOverride()

    @field_validator("code")
    @classmethod
    def _not_reserved(cls, code: str) -> str:
        if code in RESERVED_CODES or keyword.iskeyword(code):
            raise ValueError(f"{code!r} is a reserved word")
        return code

    @field_validator("label")
    @classmethod
    def _printable(cls, label: str) -> str:
        """A label is a keyword in photo managers' XMP and on terminals: no control characters,
        and nothing XML cannot hold (U+FFFE, U+FFFF, lone surrogates)."""
        bad = [c for c in label if unicodedata.category(c) in ("Cc", "Cs") or 0xFDD0 <= ord(c) <= 0xFDEF
               or ord(c) & 0xFFFE == 0xFFFE]
        if bad:
            raise ValueError(f"the label holds a character a keyword cannot (U+{ord(bad[0]):04X})")
        return label


class Attribute(_Entry):
    """A base attribute, scored by CLIP from its description."""

    description: str = Field(max_length=MAX_TEXT)
    type: Literal["clip"] = "clip"
    templates: Optional[list[str]] = None
    calibration: CalibrationOverride = CalibrationOverride()
    translations: dict[str, str] = Field({}, max_length=MAX_LANGUAGES)
    """The description in other languages, by language code ('de', 'fr', 'deu_Latn'): for
    multilingual text towers, every translation joins the prompt ensemble."""

    @field_validator("translations")
    @classmethod
    def _languages(cls, translations: dict[str, str]) -> dict[str, str]:
        return _check_translations(translations)

    @field_validator("description")
    @classmethod
    def _not_empty(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("must not be empty")
        return " ".join(text.split())

    @field_validator("templates")
    @classmethod
    def _placeholders(cls, templates: Optional[list[str]]) -> Optional[list[str]]:
        return _check_templates(templates)


class DerivedAttribute(_Entry):
    """An attribute computed from others by a boolean rule with fuzzy logic."""

    rule: str = Field(max_length=MAX_TEXT)
    type: Literal["derived"] = "derived"

    @field_validator("rule")
    @classmethod
    def _parses(cls, text: str) -> str:
        try:
            parse_rule(text)
        except RuleError as err:
            raise ValueError(str(err)) from None
        return " ".join(text.split())


class Vocabulary(_Strict):
    name: str = Field(pattern=CODE_PATTERN, max_length=64)
    version: int = Field(ge=1, le=MAX_VERSION, strict=True)  # `version: true` is not version 1
    description: str = Field("", max_length=10 * MAX_TEXT)
    templates: list[str] = DEFAULT_TEMPLATES
    templates_by_language: dict[str, list[str]] = Field({}, max_length=MAX_LANGUAGES)
    """Templates for the translations, by language (a language without any: the bare text)."""
    calibration: Calibration = Calibration()
    thresholds: Thresholds = Thresholds()
    attributes: list[Attribute] = Field(min_length=1, max_length=MAX_ENTRIES)
    derived: list[DerivedAttribute] = Field([], max_length=MAX_ENTRIES // 4)

    @field_validator("templates")
    @classmethod
    def _placeholders(cls, templates: list[str]) -> list[str]:
        return _check_templates(templates)

    @field_validator("templates_by_language")
    @classmethod
    def _language_templates(cls, by_language: dict[str, list[str]]) -> dict[str, list[str]]:
        for language, templates in by_language.items():
            _check_language(language)
            _check_templates(templates)
        return by_language

    @property
    def codes(self) -> list[str]:
        """Base codes then derived codes, in document order."""
        return [a.code for a in self.attributes] + [d.code for d in self.derived]

    def entry(self, code: str) -> Attribute | DerivedAttribute:
        for item in (*self.attributes, *self.derived):
            if item.code == code:
                return item
        raise KeyError(f"vocabulary {self.name!r} has no attribute {code!r}")

    def templates_for(self, attribute: Attribute) -> list[str]:
        return attribute.templates or self.templates

    def calibration_for(self, attribute: Attribute, model: ModelCalibration | None = None) -> Calibration:
        """The attribute's own centre and scale where it sets them; else the model's (a model
        with a learned bias, SigLIP: its scores are probabilities as they come); else the
        vocabulary's (CLIP-era defaults)."""
        override, wide = attribute.calibration, model or self.calibration
        return Calibration(
            centre=wide.centre if override.centre is None else override.centre,
            scale=wide.scale if override.scale is None else override.scale,
        )

    def calibration_source(self, attribute: Attribute, model: ModelCalibration | None = None) -> str:
        """How the attribute's centre and scale were chosen: a fit (as recorded), 'set by
        hand', the model, or 'default'."""
        override, wide = attribute.calibration, self.calibration
        if override.source:
            return override.source
        if model is not None:
            from_model = model.source or "the model's logit bias"
            if override.centre is None and override.scale is None:
                return from_model
            if override.centre is None or override.scale is None:
                return f"set by hand, the rest from {from_model}"
        if override.centre is not None or override.scale is not None:
            return "set by hand"
        if wide.source:
            return wide.source
        return "default" if (wide.centre, wide.scale) == (Calibration().centre, Calibration().scale) else "set by hand"

    def thresholds_for(self, entry: Attribute | DerivedAttribute) -> Thresholds:
        override = entry.thresholds
        return Thresholds(
            accept=self.thresholds.accept if override.accept is None else override.accept,
            reject=self.thresholds.reject if override.reject is None else override.reject,
        )

    def derived_in_order(self) -> list[DerivedAttribute]:
        """Derived attributes ordered so each comes after the derived ones it reads."""
        by_code = {d.code: d for d in self.derived}
        ordered: list[DerivedAttribute] = []
        done: set[str] = set()

        def visit(code: str) -> None:
            if code in done or code not in by_code:
                return
            done.add(code)
            for ref in sorted(references(parse_rule(by_code[code].rule))):
                visit(ref)
            ordered.append(by_code[code])

        for d in self.derived:
            visit(d.code)
        return ordered

    @cached_property
    def _canonical_hash(self) -> str:
        document = self.model_dump(mode="json")
        for calibration in (document["calibration"], *(a["calibration"] for a in document["attributes"])):
            if calibration.get("source") is None:  # unset: the hash of documents from before it existed
                calibration.pop("source", None)
        for holder, key in ((document, "templates_by_language"), *((a, "translations") for a in document["attributes"])):
            if not holder.get(key):  # likewise for languages
                holder.pop(key, None)
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def content_hash(self) -> str:
        """sha256 of the canonical JSON document: equal hashes mean equal vocabularies.
        Computed once per (frozen) document."""
        return self._canonical_hash


def _entry_name(doc: Any, loc: tuple) -> str:
    """'attributes[3] (porthole)' for a location inside an entry, else the dotted field path."""
    if len(loc) >= 2 and loc[0] in ("attributes", "derived") and isinstance(loc[1], int):
        code = None
        try:
            code = doc[loc[0]][loc[1]].get("code")
        except (KeyError, IndexError, TypeError, AttributeError):
            pass
        name = f"{loc[0]}[{loc[1]}]" + (f" ({code})" if code else "")
        rest = ".".join(str(part) for part in loc[2:])
        return f"{name}: {rest}" if rest else name
    return ".".join(str(part) for part in loc) or "document"


def _code_problems(doc: dict) -> list[str]:
    """Duplicate codes and rules naming unknown codes, read from the raw document, so they are
    reported together with any field errors, in one run."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    for section in ("attributes", "derived"):
        for index, entry in enumerate(doc.get(section) or [] if isinstance(doc.get(section), list) else []):
            code = entry.get("code") if isinstance(entry, dict) else None
            if not isinstance(code, str):
                continue
            where = f"{section}[{index}] ({code})"
            if code in seen:
                problems.append(f"{where}: duplicate code {code!r}, already used by {seen[code]}")
            else:
                seen[code] = where
    if len(problems) > MAX_LISTED:
        problems = problems[:MAX_LISTED] + [f"… and {len(problems) - MAX_LISTED:,} more duplicate codes"]
    for index, entry in enumerate(doc.get("derived") or [] if isinstance(doc.get("derived"), list) else []):
        rule = entry.get("rule") if isinstance(entry, dict) else None
        try:
            unknown = sorted(references(parse_rule(rule)) - set(seen)) if isinstance(rule, str) else []
        except RuleError:
            continue  # reported as a field error
        if unknown:
            problems.append(f"derived[{index}] ({entry.get('code')}): rule {rule!r} names unknown code(s) "
                            + ", ".join(repr(u) for u in unknown))
    return problems


def _cross_entry_problems(vocab: Vocabulary, cycles: bool = True) -> list[str]:
    """What only a valid document can be checked for: thresholds after overrides, cycles."""
    problems: list[str] = []
    entries = [("attributes", i, a) for i, a in enumerate(vocab.attributes)]
    entries += [("derived", i, d) for i, d in enumerate(vocab.derived)]
    for section, index, entry in entries:
        thresholds = entry.thresholds
        accept = vocab.thresholds.accept if thresholds.accept is None else thresholds.accept
        reject = vocab.thresholds.reject if thresholds.reject is None else thresholds.reject
        if reject >= accept:
            problems.append(f"{section}[{index}] ({entry.code}): thresholds: reject ({reject}) must be below "
                            f"accept ({accept})")
    cycle = _find_cycle(vocab) if cycles else None
    if cycle:
        problems.append(f"derived rules form a cycle: {' -> '.join(cycle)}")
    problems += _prompt_problems(vocab)
    return problems


def rendered_length(template: str, text: str, parsed: dict[str, tuple[int, int]] | None = None) -> int:
    """Characters of ``template`` with ``text`` in every placeholder, counted without
    rendering it (``parsed`` caches each template's literal length and placeholder count)."""
    from string import Formatter

    if parsed is None or template not in parsed:
        literal = fields = 0
        for text_part, name, _, _ in Formatter().parse(template):
            literal += len(text_part)
            fields += name is not None
        if parsed is None:
            return literal + fields * len(text)
        parsed[template] = (literal, fields)
    literal, fields = parsed[template]
    return literal + fields * len(text)


def _prompt_problems(vocab: Vocabulary) -> list[str]:
    """What the prompts would cost, from their lengths alone, before one is rendered: too many,
    too long, or too much text together."""
    parsed: dict[str, tuple[int, int]] = {}
    count = total = 0
    too_long: list[str] = []
    for index, attribute in enumerate(vocab.attributes):
        own = "its templates" if attribute.templates else "templates"
        pairs = [(f"{own}[{j}]", t, attribute.description) for j, t in enumerate(vocab.templates_for(attribute))]
        for language, text in attribute.translations.items():
            pairs += [(f"templates_by_language.{language}[{j}]", t, text)
                      for j, t in enumerate(vocab.templates_by_language.get(language) or ["{description}"])]
        for where, template, text in pairs:
            length = rendered_length(template, text, parsed)
            count, total = count + 1, total + length
            if length > MAX_PROMPT_CHARS:
                too_long.append(f"attributes[{index}] ({attribute.code}): {where} {template[:32]!r}"
                                f"{'…' if len(template) > 32 else ''} renders a prompt of {length:,} characters "
                                f"(at most {MAX_PROMPT_CHARS:,}: a text tower reads 77 tokens)")
    problems = too_long[:MAX_LISTED]
    if len(too_long) > MAX_LISTED:
        problems.append(f"… and {len(too_long) - MAX_LISTED:,} more prompts over {MAX_PROMPT_CHARS:,} characters")
    if count > MAX_PROMPTS:
        problems.append(f"the templates and translations render {count:,} prompts (at most {MAX_PROMPTS:,}; each goes "
                        "through the text tower once): use fewer templates or languages")
    if total > MAX_RENDERED_CHARS:
        problems.append(f"the prompts come to {total:,} characters together (at most {MAX_RENDERED_CHARS:,}): "
                        "use shorter descriptions, or fewer templates or languages")
    return problems


def _find_cycle(vocab: Vocabulary) -> list[str] | None:
    edges = {d.code: sorted(references(parse_rule(d.rule))) for d in vocab.derived}
    state: dict[str, str] = {}

    def walk(code: str, path: list[str]) -> list[str] | None:
        if state.get(code) == "active":
            return path[path.index(code):] + [code]
        if state.get(code) == "done" or code not in edges:
            return None
        state[code] = "active"
        for ref in edges[code]:
            found = walk(ref, path + [code])
            if found:
                return found
        state[code] = "done"
        return None

    for code in edges:
        found = walk(code, [])
        if found:
            return found
    return None


MAX_DOCUMENT_CHARS = 4_000_000
"""A vocabulary document's size (2,000 attributes of 1,000-character descriptions fit)."""
MAX_ALIASES = 100
"""YAML aliases (``*name``) a document may use: a million of them expand one list a million times."""
LIST_LIMITS = {"attributes": MAX_ENTRIES, "derived": MAX_ENTRIES // 4, "templates": 50}


def _loader():
    """PyYAML's safe loader, counting aliases as it composes (a 'billion laughs' document is
    refused before it expands)."""
    import yaml

    class Bounded(yaml.SafeLoader):
        aliases = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > MAX_ALIASES:
                    raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases (*name)")
            return super().compose_node(parent, index)

        def construct_mapping(self, node, deep=False):
            """A key given twice is refused: PyYAML would keep the last without a word
            (``version: 1`` then ``version: 2`` read as 2)."""
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue  # `<<: *defaults` may repeat what it merges; a list key is refused below
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice",
                                                            key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    return Bounded


def parse_vocabulary(text: str, source: str = "<vocabulary>") -> Vocabulary:
    """Parse and validate a YAML (or JSON) vocabulary document; raise VocabularyError."""
    import yaml

    if len(text) > MAX_DOCUMENT_CHARS:
        raise VocabularyError(source, [f"{len(text):,} characters, over the limit of {MAX_DOCUMENT_CHARS:,}"])
    try:
        doc = yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader, bounded
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise VocabularyError(source, [f"invalid YAML{where}: {problem}"]) from None
    except RecursionError:
        raise VocabularyError(source, ["nested too deeply to be a vocabulary"]) from None
    except ValueError as err:  # a 100,000-digit number
        raise VocabularyError(source, [f"a value the YAML reader refuses: {str(err)[:200]}"]) from None
    return vocabulary_from_dict(doc, source)


def vocabulary_from_dict(doc: Any, source: str = "<vocabulary>") -> Vocabulary:
    if not isinstance(doc, dict):
        raise VocabularyError(source, [f"expected a mapping at the top level, got {type(doc).__name__}"])
    oversized = [f"{key}: {len(doc[key]):,} entries, at most {limit:,}" for key, limit in LIST_LIMITS.items()
                 if isinstance(doc.get(key), list) and len(doc[key]) > limit]
    if oversized:  # refused before a single entry is validated
        raise VocabularyError(source, oversized)
    problems = _code_problems(doc)
    try:
        vocab = Vocabulary.model_validate(doc)
    except ValidationError as err:
        fields = [f"{_entry_name(doc, e['loc'])}: {_message(e)}" for e in err.errors()]
        raise VocabularyError(source, fields + problems) from None
    problems += _cross_entry_problems(vocab, cycles=not problems)  # a cycle check needs unique, known codes
    if problems:
        raise VocabularyError(source, problems)
    return vocab


def _message(error: dict) -> str:
    if error["type"] == "missing":
        return "required field is missing"
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "string_pattern_mismatch":
        return f"{error['input']!r} is not a lower-case identifier (letters, digits, _; starting with a letter)"
    return error["msg"].removeprefix("Value error, ")


def load_vocabulary(path: str | Path) -> Vocabulary:
    """Read and validate a vocabulary file (a regular file of bounded size); errors name it."""
    from columnist.files import read_regular_file
    from columnist.printable import printable

    path = Path(path)
    try:
        text = read_regular_file(path, MAX_DOCUMENT_CHARS * 4).decode("utf-8")
    except UnicodeDecodeError:
        raise VocabularyError(printable(path), ["not UTF-8 text"]) from None
    except OSError as err:
        raise VocabularyError(printable(path), [f"cannot read file: {getattr(err, 'reason', None) or err.strerror}"]) from None
    return parse_vocabulary(text, source=printable(path))
