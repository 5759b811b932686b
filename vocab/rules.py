"""Derived-attribute rules: boolean formulas over attribute codes, scored with fuzzy logic.

A rule such as ``astronaut and not (interior or mission_control)`` is parsed once into a
small tree. The same tree is evaluated on numpy arrays (batch path) and compiled to SQL
(replay path, ``least``/``greatest``/``1 - x``), so both paths agree by construction:
and = min, or = max, not = 1 - x.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Callable, Mapping, Union

from columnist.errors import ConfigurationError

if TYPE_CHECKING:
    import numpy as np

GRAMMAR = r"""
?start: or_
?or_: and_ ("or" and_)*
?and_: not_ ("and" not_)*
?not_: "not" not_ -> neg
     | atom
?atom: CODE -> ref
     | "(" or_ ")"
CODE: /(?!(and|or|not)\b)[a-z][a-z0-9_]*/
%import common.WS
%ignore WS
"""


class RuleError(ConfigurationError, ValueError):
    """A rule that does not parse; the message says where."""


@dataclass(frozen=True)
class Ref:
    code: str


@dataclass(frozen=True)
class Not:
    operand: "Rule"


@dataclass(frozen=True)
class And:
    operands: tuple["Rule", ...]


@dataclass(frozen=True)
class Or:
    operands: tuple["Rule", ...]


Rule = Union[Ref, Not, And, Or]


@lru_cache(maxsize=1)
def _parser():
    from lark import Lark

    return Lark(GRAMMAR, parser="lalr")


@lru_cache(maxsize=4096)
def parse_rule(text: str) -> Rule:
    """Parse ``text`` into a rule tree, or raise RuleError naming the position. Cached: the
    trees are immutable and every ingest batch evaluates the same rules."""
    from lark.exceptions import LarkError, UnexpectedInput

    if nesting(text) > MAX_NESTING:
        raise RuleError(f"rule nests 'not' and parentheses more than {MAX_NESTING} deep: {text[:80]!r}...")
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as err:
        raise RuleError(f"syntax error at column {err.column} of {text[:200]!r}") from None
    except LarkError as err:  # pragma: no cover - other lark failures
        raise RuleError(f"cannot parse {text[:200]!r}: {err}") from None
    return _from_tree(tree)


MAX_NESTING = 50


def nesting(text: str) -> int:
    """How deeply a rule nests ('not' and parentheses), counted without parsing, so a rule
    of 3,000 nots is refused before the recursive steps see it."""
    import re

    level = deepest = 0
    opened: list[int] = []  # the level at each open parenthesis
    for token in re.findall(r"\(|\)|[a-z][a-z0-9_]*", text):
        if token == "not":
            level += 1
        elif token == "(":
            opened.append(level)
            level += 1
        elif token == ")" and opened:
            opened.pop()
            level = opened[-1] + 1 if opened else 0
        elif token not in ("and", "or"):  # an operand ends the chain of nots before it
            level = opened[-1] + 1 if opened else 0
        deepest = max(deepest, level)
    return deepest


def _from_tree(node) -> Rule:
    kind = node.data
    if kind == "ref":
        return Ref(str(node.children[0]))
    if kind == "neg":
        return Not(_from_tree(node.children[0]))
    operands = tuple(_from_tree(child) for child in node.children)
    return And(operands) if kind == "and_" else Or(operands)


def references(rule: Rule) -> set[str]:
    """Every attribute code the rule reads."""
    if isinstance(rule, Ref):
        return {rule.code}
    if isinstance(rule, Not):
        return references(rule.operand)
    return set().union(*(references(op) for op in rule.operands))


def evaluate(rule: Rule, scores: Mapping[str, "np.ndarray"]) -> "np.ndarray":
    """Fuzzy value of ``rule`` for every image, given each referenced code's scores."""
    import numpy as np

    if isinstance(rule, Ref):
        return scores[rule.code]
    if isinstance(rule, Not):
        return np.float32(1.0) - evaluate(rule.operand, scores)
    values = [evaluate(op, scores) for op in rule.operands]
    combine = np.minimum if isinstance(rule, And) else np.maximum
    out = values[0]
    for value in values[1:]:
        out = combine(out, value)
    return out


def to_sql(rule: Rule, column: Callable[[str], str]) -> str:
    """The rule as a ClickHouse expression; ``column(code)`` gives each code's expression."""
    if isinstance(rule, Ref):
        return column(rule.code)
    if isinstance(rule, Not):
        return f"(1 - {to_sql(rule.operand, column)})"
    function = "least" if isinstance(rule, And) else "greatest"
    return f"{function}({', '.join(to_sql(op, column) for op in rule.operands)})"
