import numpy as np
import pytest

from columnist.vocab.rules import And, Not, Or, Ref, RuleError, evaluate, parse_rule, references, to_sql


def test_precedence_not_binds_tighter_than_and_than_or():
    assert parse_rule("a or b and not c") == Or((Ref("a"), And((Ref("b"), Not(Ref("c"))))))
    assert parse_rule("(a or b) and c") == And((Or((Ref("a"), Ref("b"))), Ref("c")))


def test_codes_containing_keywords_are_codes():
    assert parse_rule("android or notion") == Or((Ref("android"), Ref("notion")))
    assert references(parse_rule("earth_and_moon and not (x or y)")) == {"earth_and_moon", "x", "y"}


@pytest.mark.parametrize("text", ["a and", "and a", "a b", "(a", "a + b", "A or b", ""])
def test_syntax_errors(text):
    with pytest.raises(RuleError):
        parse_rule(text)


def test_fuzzy_evaluation():
    scores = {k: np.array(v, np.float32) for k, v in {"a": [0.9, 0.2], "b": [0.3, 0.7], "c": [0.6, 0.1]}.items()}
    got = evaluate(parse_rule("(a or b) and not c"), scores)
    expected = np.minimum(np.maximum(scores["a"], scores["b"]), 1 - scores["c"])
    np.testing.assert_array_equal(got, expected)


def test_sql_compilation():
    sql = to_sql(parse_rule("a and not (b or c)"), lambda code: f"s_{code}")
    assert sql == "least(s_a, (1 - greatest(s_b, s_c)))"
