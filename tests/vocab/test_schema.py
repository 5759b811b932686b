import textwrap

import pytest
from typer.testing import CliRunner

from columnist.cli.main import app
from tests.conftest import SPACE_YAML
from columnist.vocab.schema import VocabularyError, load_vocabulary, parse_vocabulary

GOOD = """
name: demo
version: 1
attributes:
  - {code: earth, label: Earth, description: "the planet Earth"}
  - {code: moon, description: "the Moon"}
derived:
  - {code: both, rule: "earth and moon"}
"""


def test_space_vocabulary_is_valid_and_large_enough():
    vocab = load_vocabulary(SPACE_YAML)
    assert vocab.name == "space"
    assert len(vocab.attributes) >= 37
    for code in ("earth", "moon", "spacecraft", "crew", "porthole", "hand", "mission_control", "photograph"):
        vocab.entry(code)
    assert {"earth_and_moon", "spacewalk"} <= {d.code for d in vocab.derived}


def test_defaults_and_overrides():
    vocab = parse_vocabulary(GOOD + "calibration: {centre: 20, scale: 2}\n")
    earth = vocab.entry("earth")
    assert vocab.templates_for(earth) == ["a photo of {description}"]
    assert vocab.calibration_for(earth).centre == 20
    overridden = parse_vocabulary(GOOD.replace(
        'description: "the Moon"}', 'description: "the Moon", calibration: {scale: 4}, thresholds: {accept: 0.9}}'))
    moon = overridden.entry("moon")
    assert overridden.calibration_for(moon).scale == 4
    assert overridden.calibration_for(moon).centre == 25.0
    assert overridden.thresholds_for(moon).accept == 0.9
    assert overridden.thresholds_for(moon).reject == 0.2


def test_content_hash_changes_with_content_only():
    a, b = parse_vocabulary(GOOD), parse_vocabulary(GOOD)
    assert a.content_hash() == b.content_hash()
    assert parse_vocabulary(GOOD.replace("the Moon", "the Moon at night")).content_hash() != a.content_hash()


BROKEN = {
    "invalid yaml": (GOOD + "  - {code: [unclosed\n", ["invalid YAML at line"]),
    "missing field": (GOOD.replace('description: "the Moon"', 'label: Moon'), ["attributes[1] (moon): description: required field is missing"]),
    "duplicate code": (GOOD.replace("code: moon", "code: earth"), ["attributes[1] (earth): duplicate code 'earth'"]),
    "not an identifier": (GOOD.replace("code: moon", "code: Big-Moon"), ["attributes[1] (Big-Moon): code: 'Big-Moon' is not a lower-case identifier"]),
    "empty description": (GOOD.replace('"the Moon"', '"   "'), ["attributes[1] (moon): description: must not be empty"]),
    "thresholds out of order": (GOOD + "thresholds: {accept: 0.3, reject: 0.6}\n", ["thresholds: reject (0.6) must be below accept (0.3)"]),
    "attribute thresholds out of order": (
        GOOD.replace('description: "the Moon"', 'description: "the Moon", thresholds: {reject: 0.9}'),
        ["attributes[1] (moon): thresholds: reject (0.9) must be below accept (0.8)"]),
    "unknown code in rule": (GOOD.replace('"earth and moon"', '"earth and mars"'), ["derived[0] (both): rule 'earth and mars' names unknown code(s) 'mars'"]),
    "rule syntax": (GOOD.replace('"earth and moon"', '"earth and (moon"'), ["derived[0] (both): rule: syntax error at column"]),
    "cycle": (GOOD + '  - {code: a, rule: "b or earth"}\n  - {code: b, rule: "not a"}\n', ["derived rules form a cycle: a -> b -> a"]),
    "template without placeholder": (GOOD.replace('description: "the Moon"}', 'description: "the Moon", templates: ["a moon"]}'),
                                     ["attributes[1] (moon): templates: Value error, template 'a moon' has no {description} placeholder"]),
    "unknown field": (GOOD.replace('label: Earth,', 'lable: Earth,'), ["attributes[0] (earth): lable: unknown field"]),
    "no attributes": ("name: demo\nversion: 1\nattributes: []\n", ["attributes: List should have at least 1 item"]),
    "not a mapping": ("- just\n- a list\n", ["expected a mapping at the top level, got list"]),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_error_names_entry_and_problem(case):
    text, expected = BROKEN[case]
    with pytest.raises(VocabularyError) as info:
        parse_vocabulary(text, source="bad.yaml")
    message = str(info.value)
    assert message.startswith("bad.yaml: invalid vocabulary")
    for fragment in expected:
        assert fragment.replace("Value error, ", "") in message


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_cli_validate_exits_nonzero_naming_file_and_entry(case, tmp_path):
    text, expected = BROKEN[case]
    file = tmp_path / "bad.yaml"
    file.write_text(textwrap.dedent(text))
    result = CliRunner().invoke(app, ["vocab", "validate", str(file)])
    assert result.exit_code == 3  # a bad vocabulary: the README's exit code 3
    assert str(file) in result.output
    assert expected[0].replace("Value error, ", "") in result.output


def test_cli_validate_good_file():
    result = CliRunner().invoke(app, ["vocab", "validate", str(SPACE_YAML)])
    assert result.exit_code == 0, result.output
    assert "ok: vocabulary 'space'" in result.output


def test_missing_file_is_named(tmp_path):
    with pytest.raises(VocabularyError, match="nope.yaml: invalid vocabulary\n  - cannot read file"):
        load_vocabulary(tmp_path / "nope.yaml")


@pytest.mark.parametrize("edit, problem", [
    ("templates: ['{description} at {place}']", "unknown placeholder(s) place"),
    ("templates: ['a photo of {{description}}']", "no {description} placeholder"),
    ("templates: ['a photo of {description!r}']", "plain {description}"),
    ("templates: ['a photo of {}']", "unknown placeholder(s) {}"),
    ("templates: ['a photo of {description']", "write a literal brace"),
    ("version: 1099511627776", "less than or equal to 4294967295"),
    ("calibration: {centre: .nan, scale: 2.5}", "finite number"),
    ("thresholds: {accept: .inf, reject: 0.2}", "finite number"),
    ("version: true", "valid integer"),  # not version 1
    ("name: other", "the key 'name' is given twice"),  # PyYAML kept the last without a word
])
def test_documents_that_would_break_the_worker_are_refused(edit, problem):
    text = GOOD.replace("version: 1\n", f"version: 1\n{edit}\n") if not edit.startswith("version") \
        else GOOD.replace("version: 1", edit)
    with pytest.raises(VocabularyError) as caught:
        parse_vocabulary(text, "demo.yaml")
    assert problem in str(caught.value) and "demo.yaml" in str(caught.value)


def test_a_merge_key_still_merges_and_a_list_as_a_key_is_refused_by_name():
    merged = parse_vocabulary("name: demo\nversion: 1\nattributes:\n  - &moon {code: moon, description: the Moon}\n"
                              "  - {<<: *moon, code: luna}\n")
    assert [(a.code, a.description) for a in merged.attributes] == [("moon", "the Moon"), ("luna", "the Moon")]
    with pytest.raises(VocabularyError, match="invalid YAML"):
        parse_vocabulary("name: demo\nversion: 1\n? [1, 2]\n: x\nattributes: [{code: a, description: d}]\n")


def test_deeply_nested_rules_are_refused_naming_the_entry():
    for rule, problem in (("not " * 3000 + "earth", "at most 1000 characters"),
                          ("not " * 60 + "earth", "more than 50 deep"),
                          ("(" * 60 + "earth" + ")" * 60, "more than 50 deep")):
        text = GOOD + f'  - {{code: deep, rule: "{rule}"}}\n'
        with pytest.raises(VocabularyError) as caught:
            parse_vocabulary(text, "demo.yaml")
        assert problem in str(caught.value) and "derived[1] (deep)" in str(caught.value)
    flat = " and ".join(["not earth"] * 60)  # long, but flat: accepted
    parse_vocabulary(GOOD + f'  - {{code: flat, rule: "{flat}"}}\n', "demo.yaml")


def test_every_problem_of_a_file_is_reported_in_one_run():
    text = GOOD.replace('{code: moon, description: "the Moon"}', '{code: earth, description: ""}').replace(
        '"earth and moon"', '"earth and mars"')
    with pytest.raises(VocabularyError) as caught:
        parse_vocabulary(text, "demo.yaml")
    problems = caught.value.problems
    assert any("attributes[1] (earth): description: must not be empty" in p for p in problems)
    assert any("duplicate code 'earth'" in p for p in problems)
    assert any("names unknown code(s) 'mars'" in p for p in problems)


def test_a_keyword_is_never_taken_for_a_code():
    with pytest.raises(VocabularyError, match="syntax error at column"):
        parse_vocabulary(GOOD.replace('"earth and moon"', '"earth and and"'), "demo.yaml")


def test_hostile_yaml_is_refused_quickly_and_by_name():
    """Found by an adversarial run: aliases expanding one list 2,000 times (14.6 s, 1.67 GB),
    a million aliases, nesting 50,000 deep (a RecursionError), a 100,000-digit version."""
    import pytest

    from columnist.vocab.schema import VocabularyError, parse_vocabulary

    templates = "templates: &t [" + ", ".join(["'a {description}'"] * 100_000) + "]\n"
    cases = {
        "a list aliased 2,000 times": "name: x\nversion: 1\n" + templates + "attributes:\n" + "".join(
            f"  - {{code: a{i}, description: d, templates: *t}}\n" for i in range(2_000)),
        "a million aliases": "name: x\nversion: 1\nd: &x a\nattributes: [" + ", ".join(["*x"] * 1_000_000) + "]\n",
        "nested 50,000 deep": "name: x\nversion: 1\nattributes: " + "[" * 50_000 + "]" * 50_000 + "\n",
        "a 100,000-digit version": "name: x\nversion: " + "9" * 100_000 + "\nattributes: [{code: a, description: d}]\n",
    }
    for name, text in cases.items():
        with pytest.raises(VocabularyError) as refused:
            parse_vocabulary(text, name)
        assert len(str(refused.value).splitlines()) <= 12, name
