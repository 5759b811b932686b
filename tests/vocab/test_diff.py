from columnist.vocab.diff import diff_vocabularies
from columnist.vocab.schema import parse_vocabulary

BASE = """
name: t
version: 1
attributes:
  - {code: earth, label: Earth, description: "the Earth"}
  - {code: moon, description: "the Moon"}
  - {code: astronaut, description: "an astronaut"}
derived:
  - {code: both, rule: "earth and moon"}
  - {code: crewed_view, rule: "both and astronaut"}
  - {code: solo, rule: "astronaut"}
"""


def v(text):
    return parse_vocabulary(text)


def test_first_application_adds_everything():
    d = diff_vocabularies(None, v(BASE))
    assert d.added == ("earth", "moon", "astronaut", "both", "crewed_view", "solo")
    assert d.rescore == d.added


def test_same_document_is_empty():
    assert diff_vocabularies(v(BASE), v(BASE)).is_empty


def test_added_attribute_only():
    new = v(BASE.replace("derived:", '  - {code: porthole, description: "a porthole"}\nderived:'))
    d = diff_vocabularies(v(BASE), new)
    assert (d.added, d.changed, d.removed, d.dependents) == (("porthole",), (), (), ())


def test_changed_description_rescores_it_and_its_dependents():
    d = diff_vocabularies(v(BASE), v(BASE.replace('"the Moon"', '"the full Moon"')))
    assert d.changed == ("moon",)
    assert d.dependents == ("both", "crewed_view")
    assert "solo" not in d.rescore


def test_calibration_change_is_a_change_but_labels_and_thresholds_are_not():
    d = diff_vocabularies(v(BASE), v(BASE.replace('description: "an astronaut"}', 'description: "an astronaut", calibration: {centre: 21}}')))
    assert d.changed == ("astronaut",) and d.dependents == ("crewed_view", "solo")
    relabelled = v(BASE.replace("label: Earth", "label: Planet Earth") + "thresholds: {accept: 0.9, reject: 0.1}\n")
    assert diff_vocabularies(v(BASE), relabelled).rescore == ()


def test_template_change_changes_every_attribute_using_it():
    d = diff_vocabularies(v(BASE), v(BASE + 'templates: ["a picture of {description}"]\n'))
    assert d.changed == ("earth", "moon", "astronaut")


def test_removed_attribute():
    new = v(BASE.replace('  - {code: solo, rule: "astronaut"}\n', ""))
    d = diff_vocabularies(v(BASE), new)
    assert d.removed == ("solo",) and d.rescore == ()


def test_changed_rule():
    d = diff_vocabularies(v(BASE), v(BASE.replace('"earth and moon"', '"earth or moon"')))
    assert d.changed == ("both",) and d.dependents == ("crewed_view",)
