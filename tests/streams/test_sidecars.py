"""XMP sidecars (columnist.sidecars) on a tagged folder, read back by ExifTool and by the XMP
toolkit: keywords added and removed as thresholds move, a person's own keywords and other
metadata kept, a broken sidecar left alone, nothing written outside the folders given."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from columnist.models.mock import MockEncoder
from columnist.tagger import find_images, tag
from columnist.vocab.schema import vocabulary_from_dict
from columnist.vocabulary_change import apply_vocabulary
from tests.conftest import PHOTOS

pytestmark = pytest.mark.integration
xmp = pytest.importorskip("columnist.sidecars")
try:
    xmp._xmp()
except xmp.XmpUnavailable as missing:  # the system library: .ci/run and `make setup` install it
    pytest.skip(str(missing), allow_module_level=True)
EXIFTOOL = shutil.which("exiftool")

USERS_OWN = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:xmp="http://ns.adobe.com/xap/1.0/"
  xmlns:lr="http://ns.adobe.com/lightroom/1.0/" xmp:Rating="4">
<dc:subject><rdf:Bag><rdf:li>holiday</rdf:li><rdf:li>{label}</rdf:li></rdf:Bag></dc:subject>
<lr:hierarchicalSubject><rdf:Bag><rdf:li>trips|2024|holiday</rdf:li></rdf:Bag></lr:hierarchicalSubject>
</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>"""


def exiftool(*args: str) -> str:
    if EXIFTOOL is None:
        pytest.fail("exiftool is not installed (apt-get install libimage-exiftool-perl; .ci/run installs it)")
    return subprocess.run([EXIFTOOL, *args], capture_output=True, text=True, check=True, timeout=60).stdout


def read_tag(sidecar, name: str) -> list[str]:
    """A list tag as ExifTool reads it (its JSON: a string for one item, a list for more)."""
    import json

    value = json.loads(exiftool("-j", f"-{name}", str(sidecar)))[0].get(name.split(":")[-1], [])
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def subjects(sidecar) -> list[str]:
    return read_tag(sidecar, "XMP-dc:Subject")


def accepted(store, image_id: str) -> list[str]:
    _, rows = store.query("SELECT if(c.label != '', c.label, t.attribute) FROM columnist.image_attribute_tier AS t "
                          "INNER JOIN columnist.vocabulary_current AS c ON c.vocab_name = t.vocab_name AND "
                          "c.code = t.attribute WHERE t.image_id = {i:String} AND t.tier = 'accepted'", {"i": image_id})
    return sorted(label for (label,) in rows)


@pytest.fixture
def tagged(store, space_vocab, tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(PHOTOS, folder)
    tag(find_images([folder]), space_vocab, MockEncoder(), store)
    return folder


def test_keywords_follow_the_thresholds_and_a_persons_own_stay(store, space_vocab, tagged):
    moon = tagged / "moon.jpg"
    moon_id = moon.resolve().as_uri()
    mine = accepted(store, moon_id)[0]  # a label columnist accepts, which the person has written too
    (tagged / "moon.jpg.xmp").write_text(USERS_OWN.format(label=mine))

    run = xmp.write_all(store, [tagged], ["space"], ["accepted"])
    assert run.images == len(list(PHOTOS.glob("*.jpg"))) and not run.outside and not run.missing
    assert all(not c.error for c in run.changes)
    expected = accepted(store, moon_id)
    assert sorted(subjects(tagged / "moon.jpg.xmp")) == sorted(set(expected) | {"holiday"})
    assert exiftool("-s3", "-XMP-xmp:Rating", str(tagged / "moon.jpg.xmp")).strip() == "4"  # the rest is kept
    hierarchical = read_tag(tagged / "moon.jpg.xmp", "XMP-lr:HierarchicalSubject")
    assert "trips|2024|holiday" in hierarchical and f"columnist|space|{expected[-1]}" in hierarchical

    again = xmp.write_all(store, [tagged], ["space"], ["accepted"])
    assert again.changes == []  # nothing changed: nothing rewritten

    # a stricter vocabulary: every threshold raised past the scores of some keywords
    document = space_vocab.model_dump(mode="json")
    document["version"] = 2
    document["thresholds"] = {"accept": 0.99, "reject": 0.05}
    for entry in document["attributes"] + document.get("derived", []):
        entry.pop("thresholds", None)
    stricter = vocabulary_from_dict(document)
    apply_vocabulary(store, MockEncoder(), space_vocab, stricter, 0, default_view=True)
    still = accepted(store, moon_id)
    assert len(still) < len(expected)
    changed = xmp.write_all(store, [tagged], ["space"], ["accepted"])
    moon_change = next(c for c in changed.changes if c.image.name == "moon.jpg")
    assert sorted(moon_change.removed) == sorted(set(expected) - set(still) - {mine})
    assert sorted(subjects(tagged / "moon.jpg.xmp")) == sorted(set(still) | {"holiday", mine})  # theirs, whatever the score


def test_tentative_too_a_dry_run_and_the_toolkit_reads_back_the_scores(store, tagged):
    dry = xmp.write_all(store, [tagged], ["space"], ["accepted", "tentative"], dry_run=True)
    assert dry.changes and not list(tagged.glob("*.xmp"))  # listed, not written
    xmp.write_all(store, [tagged], ["space"], ["accepted", "tentative"], naming="replace")
    assert (tagged / "rocket.xmp").exists() and not (tagged / "rocket.jpg.xmp").exists()
    libxmp = xmp._xmp()
    meta = libxmp.XMPMeta()
    meta.parse_from_str((tagged / "rocket.xmp").read_text())
    scores = xmp._array(meta, xmp.NAMESPACE, "scores")
    assert scores and all(s.startswith("space|") and s.split("|")[3] in ("accepted", "tentative") for s in scores)
    assert exiftool("-s3", "-XMP-columnist:all", str(tagged / "rocket.xmp")) != ""  # a namespace ExifTool lists


def test_a_broken_sidecar_a_link_and_files_outside_the_folders_are_left_alone(store, tagged, tmp_path):
    broken = tagged / "coffee.jpg.xmp"
    broken.write_text("<x:xmpmeta><rdf:RDF>not closed")
    target = tmp_path / "elsewhere.txt"
    target.write_text("not a sidecar")
    (tagged / "rocket.jpg.xmp").symlink_to(target)
    run = xmp.write_all(store, [tagged / "nested-nowhere"], ["space"], ["accepted"])
    assert len(run.outside) == run.images and run.changes == []  # none of them is under that folder
    run = xmp.write_all(store, [tagged], ["space"], ["accepted"])
    errors = {c.image.name: c.error for c in run.changes if c.error}
    assert "not valid XMP" in errors["coffee.jpg"] and broken.read_text() == "<x:xmpmeta><rdf:RDF>not closed"
    assert "rocket.jpg" in errors and target.read_text() == "not a sidecar"


def test_an_image_whose_sidecar_name_would_be_too_long_is_named_and_the_others_get_theirs(store, space_vocab,
                                                                                           tagged):
    long_name = tagged / ("L" * 250 + ".jpg")  # 254 characters: '.xmp' takes it past the file system's 255
    shutil.copy(PHOTOS / "moon.jpg", long_name)
    tag(find_images([long_name]), space_vocab, MockEncoder(), store)
    run = xmp.write_all(store, [tagged], ["space"], ["accepted"])
    errors = {c.image.name: (c.error, c.sidecar.name) for c in run.changes if c.error}
    assert errors == {long_name.name: ("left as it is: File name too long", long_name.name + ".xmp")}
    assert len(run.changes) == len(list(PHOTOS.glob("*.jpg"))) + 1  # the others got theirs


def test_a_blank_label_is_the_code_and_a_bar_in_a_label_is_no_extra_keyword_level(store, space_vocab, tagged):
    document = space_vocab.model_dump(mode="json")
    document["version"] = 2
    document["thresholds"] = {"accept": 1e-9, "reject": 1e-10}  # every score accepted
    for entry in document["attributes"] + document.get("derived", []):
        entry.pop("thresholds", None)
    first, second = document["attributes"][:2]
    first["label"], second["label"] = "   ", "Moon|Luna"  # valid in a vocabulary stored before these were written
    apply_vocabulary(store, MockEncoder(), space_vocab, vocabulary_from_dict(document), 0, default_view=True)
    xmp.write_all(store, [tagged], ["space"], ["accepted"])
    keywords = subjects(tagged / "moon.jpg.xmp")
    assert first["code"] in keywords and "Moon/Luna" in keywords and "   " not in keywords
    hierarchical = read_tag(tagged / "moon.jpg.xmp", "XMP-lr:HierarchicalSubject")
    assert "columnist|space|Moon/Luna" in hierarchical and "columnist|space|Moon|Luna" not in hierarchical


def test_the_command_names_what_it_did(store, tagged, tmp_path):
    from tests.streams.test_cli import columnist

    db = f"chdb://{tmp_path / 'cli-db'}"
    columnist("tag", str(tagged), "--db", db, "--model", "mock")
    refused = columnist("sidecars", "--db", db, check=False)
    assert refused.returncode == 2 and "--root DIR" in refused.stderr
    done = columnist("sidecars", "--root", str(tagged), "--db", db)
    assert "new " in done.stdout and "wrote 7 sidecars (7 new)" in done.stderr
    assert "0 sidecars" in columnist("sidecars", "--root", str(tagged), "--db", db).stderr


@pytest.mark.parametrize("name, make, reason", __import__("tests.hostile", fromlist=["sidecar_cases"]).sidecar_cases(),
                         ids=lambda value: value if isinstance(value, str) and " " in value else "")
def test_hostile_sidecars_are_named_and_left_alone(store, tagged, name, make, reason):
    sidecar = tagged / "moon.jpg.xmp"
    make(sidecar)
    before = sidecar.stat()
    run = xmp.write_all(store, [tagged], ["space"], ["accepted"])
    errors = {c.image.name: c.error for c in run.changes if c.error}
    assert reason in errors.get("moon.jpg", ""), (name, errors)
    assert (sidecar.stat().st_size, sidecar.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert len(run.changes) == len(list(PHOTOS.glob("*.jpg")))  # the other photos got theirs


def test_a_vocabulary_named_is_the_only_one_touched_and_an_unknown_one_is_refused(store, tagged):
    with pytest.raises(xmp.ConfigurationError, match="no vocabulary 'spcae' is applied"):
        xmp.write_all(store, [tagged], ["spcae"], ["accepted"])
    image = tagged / "moon.jpg"
    pets = xmp.Keyword("pets", "cat", "Cat", 0.9, "accepted")
    space = [xmp.Keyword("space", "moon", "Moon", 0.95, "accepted"), xmp.Keyword("space", "earth", "Earth", 0.9,
                                                                                  "accepted")]
    xmp.update(image, [pets, *space])
    change = xmp.update(image, space[:1], scope=["space"])  # space says Moon only now; pets is not this run's
    assert change.removed == ["Earth"] and change.added == []
    assert sorted(subjects(tagged / "moon.jpg.xmp")) == ["Cat", "Moon"]
    assert "columnist|pets|Cat" in read_tag(tagged / "moon.jpg.xmp", "XMP-lr:HierarchicalSubject")
    assert sorted(xmp.update(image, [], scope=None).removed) == ["Cat", "Moon"]  # every vocabulary's run: all of it
    libxmp = xmp._xmp()  # a person's own Lightroom path that happens to start with columnist| is theirs
    meta = libxmp.XMPMeta()
    meta.parse_from_str((tagged / "moon.jpg.xmp").read_text())
    xmp._set_array(meta, xmp.LIGHTROOM, "hierarchicalSubject", ["columnist|Trips|Day1"])
    (tagged / "moon.jpg.xmp").write_text(meta.serialize_to_str())
    xmp.update(image, space, scope=["space"])
    xmp.update(image, space, scope=None)
    assert "columnist|Trips|Day1" in read_tag(tagged / "moon.jpg.xmp", "XMP-lr:HierarchicalSubject")
    assert sorted(subjects(tagged / "moon.jpg.xmp")) == ["Earth", "Moon"]


def test_a_sidecar_named_after_another_file_is_left_to_it_and_new_ones_follow_the_umask(store, tagged):
    (tagged / "moon.CR2").write_bytes(b"a camera RAW beside its JPEG")
    lightroom = tagged / "moon.xmp"
    lightroom.write_text(USERS_OWN.format(label="develop settings"))
    before = lightroom.read_text()
    (tagged / "rocket.png").write_bytes((PHOTOS / "rocket.jpg").read_bytes())  # two images named rocket
    (tagged / "coffee.AAE").write_text("<plist/>")  # an iPhone edit file is no image: coffee.xmp stays coffee.jpg's
    run = xmp.write_all(store, [tagged], ["space"], ["accepted", "tentative"], naming="replace")
    assert lightroom.read_text() == before and (tagged / "moon.jpg.xmp").exists()
    assert (tagged / "rocket.jpg.xmp").exists() and not (tagged / "rocket.xmp").exists()
    assert (tagged / "coffee.xmp").exists()  # no other coffee: Lightroom's name, as asked
    mask = __import__("columnist.files", fromlist=["umask"]).umask()
    assert all(c.sidecar.stat().st_mode & 0o777 == 0o666 & ~mask for c in run.changes if c.created)
