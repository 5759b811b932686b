"""What a new vocabulary version changes, and so which attributes must be re-scored.

A base attribute is re-scored when it is new, or when its rendered prompts or its
calibration changed; a derived one when it is new, its rule changed, or it reads (directly
or through other derived attributes) any attribute that is re-scored. Labels and thresholds
change no score: tiers are computed from thresholds at query time.
"""

from __future__ import annotations

from dataclasses import dataclass

from columnist.vocab.prompts import language_prompts
from columnist.vocab.rules import parse_rule, references
from columnist.vocab.schema import Attribute, Calibration, Vocabulary


@dataclass(frozen=True)
class VocabularyDiff:
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    dependents: tuple[str, ...] = ()

    @property
    def rescore(self) -> tuple[str, ...]:
        """Every code whose scores must be (re)written, in vocabulary order."""
        return self.added + self.changed + self.dependents

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.changed or self.removed or self.dependents)


def _base_signature(vocab: Vocabulary, attribute: Attribute, model: Calibration | None = None) -> tuple:
    calibration = vocab.calibration_for(attribute, model)
    return tuple(language_prompts(vocab, attribute)), calibration.centre, calibration.scale


def dependents(vocab: Vocabulary, codes: set[str]) -> list[str]:
    """Derived attributes not in ``codes`` that read any of them, directly or through
    other derived attributes, in evaluation order."""
    found: list[str] = []
    for derived in vocab.derived_in_order():
        if derived.code not in codes and references(parse_rule(derived.rule)) & (codes | set(found)):
            found.append(derived.code)
    return found


def diff_vocabularies(old: Vocabulary | None, new: Vocabulary, model: Calibration | None = None) -> VocabularyDiff:
    """The diff from ``old`` (None: nothing applied yet) to ``new``; ``model``: the model's own
    default calibration (SigLIP's bias), against which effective calibrations are compared."""
    old_base = {a.code: _base_signature(old, a, model) for a in old.attributes} if old else {}
    old_rules = {d.code: d.rule for d in old.derived} if old else {}
    old_codes = set(old_base) | set(old_rules)

    added, changed = [], []
    for attribute in new.attributes:
        if attribute.code not in old_codes:
            added.append(attribute.code)
        elif old_base.get(attribute.code) != _base_signature(new, attribute, model):
            changed.append(attribute.code)
    for derived in new.derived:
        if derived.code not in old_codes:
            added.append(derived.code)
        elif old_rules.get(derived.code) != derived.rule:
            changed.append(derived.code)
    removed = [c for c in (old.codes if old else []) if c not in set(new.codes)]

    affected = dependents(new, set(added) | set(changed) | set(removed))
    order = {code: i for i, code in enumerate(new.codes)}
    return VocabularyDiff(
        added=tuple(sorted(added, key=order.get)),
        changed=tuple(sorted(changed, key=order.get)),
        removed=tuple(removed),
        dependents=tuple(sorted(affected, key=order.get)),
    )
