"""The statements of a model migration (model_change): what is left to re-embed, what could
not be, how two models' accepted sets differ, and deleting a retired model's rows.

What a model still lacks is found by absence, not by bookkeeping: an image without the
model's embedding, a video without any frame of it. So a re-embed resumes wherever it was
killed, and images stored meanwhile without the new model are found by the next pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from columnist.store.checkpoints import BUCKETS

if TYPE_CHECKING:
    from columnist.store import Statements

JOB_PREFIX = "model "
"""A re-embed job's name in replay_checkpoint (vocab_name ''): ``model <name>``."""

LACKING = """
FROM columnist.images FINAL
WHERE {where}
  AND image_id NOT IN (SELECT image_id FROM columnist.image_embedding WHERE model = {m:String})
  AND image_id NOT IN (SELECT video_id FROM columnist.video_frames WHERE frame_id IN
                        (SELECT image_id FROM columnist.image_embedding WHERE model = {m:String}))
"""
"""Images (and videos) the model has no embedding of (a video: of none of its frames)."""
NOT_NOTED = ("(image_id, uri) NOT IN (SELECT image_id, uri FROM columnist.reembed_missing FINAL "
             "WHERE model = {m:String})")
IN_CHUNK = f"cityHash64(image_id) % {BUCKETS} IN {{buckets:Array(UInt8)}}"

MODEL_TABLES = ("image_embedding", "feature_image_attribute", "vocabulary", "prompt_embedding", "search_phrase",
                "reembed_missing")
"""Every table whose rows belong to one model (retiring a model deletes its rows from each)."""

COMPARE = """
SELECT attribute, countIf(a >= accept AND b >= accept) AS kept, countIf(a < accept AND b >= accept) AS gained,
       countIf(a >= accept AND b < accept) AS lost, count() AS images, corr(a, b) AS correlation,
       groupArrayIf({examples:UInt32})(image_id, a < accept AND b >= accept) AS gained_ids,
       groupArrayIf({examples:UInt32})(image_id, a >= accept AND b < accept) AS lost_ids
FROM (
    SELECT x.attribute AS attribute, x.image_id AS image_id, toFloat64(x.score) AS a, toFloat64(y.score) AS b,
           {accepts:Array(Float64)}[indexOf({codes:Array(String)}, x.attribute)] AS accept
    FROM (SELECT attribute, image_id, score FROM columnist.feature_image_attribute FINAL
          WHERE vocab_name = {v:String} AND model = {a:String} AND attribute IN {codes:Array(String)}) AS x
    INNER JOIN (SELECT attribute, image_id, score FROM columnist.feature_image_attribute FINAL
                WHERE vocab_name = {v:String} AND model = {b:String} AND attribute IN {codes:Array(String)}) AS y
          ON y.attribute = x.attribute AND y.image_id = x.image_id
    WHERE x.image_id IN (SELECT image_id FROM columnist.images)
)
GROUP BY attribute
ORDER BY indexOf({codes:Array(String)}, attribute)
"""


@dataclass(frozen=True)
class Pending:
    image_id: str
    uri: str
    collection: str
    sha256: str
    kind: str


@dataclass(frozen=True)
class AttributeChange:
    """How one attribute's accepted set moves from model a to model b."""

    attribute: str
    kept: int
    gained: int
    lost: int
    images: int
    correlation: float
    gained_ids: list[str]
    lost_ids: list[str]


def pending(store: "Statements", model: str, buckets: Sequence[int] | None = None, limit: int = 0) -> list[Pending]:
    """Images ``model`` has no embedding of and that were not noted as unreadable for it (in
    ``buckets``, or all), in id order."""
    where = IN_CHUNK if buckets is not None else "1"
    sql = ("SELECT image_id, uri, collection, sha256, kind " + LACKING.replace("{where}", where) +
           f" AND {NOT_NOTED} ORDER BY image_id" + (" LIMIT {limit:UInt64}" if limit else ""))
    _, rows = store.query(sql, {"m": model, "buckets": list(buckets or []), "limit": limit})
    return [Pending(*row) for row in rows]


def count_lacking(store: "Statements", model: str) -> int:
    """Images and videos ``model`` has no embedding of, the unreadable ones included."""
    return int(store.scalar("SELECT count() " + LACKING.replace("{where}", "1"), {"m": model}))


def note_missing(store: "Statements", model: str, rows: Sequence[tuple[str, str, str]]) -> None:
    """(image_id, uri, reason) of images that could not be read again for ``model``."""
    if rows:
        store.command("INSERT INTO columnist.reembed_missing (model, image_id, uri, reason, noted_at) "
                      "SELECT {m:String}, t.1, t.2, t.3, now64(3) FROM (SELECT arrayJoin({rows:Array(Tuple(String, "
                      "String, String))}) AS t)", {"m": model, "rows": [tuple(r) for r in rows]})


def deleted_of(store: "Statements", image_ids: Sequence[str]) -> list[str]:
    """Those of ``image_ids`` that are no longer stored (deleted while a job embedded them)."""
    _, rows = store.query("SELECT image_id FROM columnist.images WHERE image_id IN {ids:Array(String)}",
                          {"ids": list(image_ids)})
    present = {image_id for (image_id,) in rows}
    return [image_id for image_id in image_ids if image_id not in present]


def forget_missing(store: "Statements", model: str) -> None:
    """Try the unreadable ones again (a re-embed run by hand starts with this)."""
    store.command("DELETE FROM columnist.reembed_missing WHERE model = {m:String}", {"m": model})


def missing(store: "Statements", model: str, limit: int = 20) -> tuple[int, list[tuple[str, str]]]:
    """How many images are noted unreadable for ``model`` and still lack it, and (image_id,
    reason) of the first ``limit``."""
    sql = ("FROM columnist.reembed_missing FINAL WHERE model = {m:String} AND image_id IN (SELECT image_id " +
           LACKING.replace("{where}", "1") + ")")
    count = int(store.scalar("SELECT count() " + sql, {"m": model}))
    _, rows = store.query("SELECT image_id, reason " + sql + " ORDER BY image_id LIMIT {n:UInt64}",
                          {"m": model, "n": limit})
    return count, [(i, r) for i, r in rows]


def compare(store: "Statements", vocab_name: str, a: str, b: str, codes: Sequence[str], accepts: Sequence[float],
            examples: int = 6) -> list[AttributeChange]:
    """Per attribute, over the images both models scored: kept, gained and lost accepted
    images (with examples of each change), and the correlation of the two models' scores."""
    _, rows = store.query(COMPARE, {"v": vocab_name, "a": a, "b": b, "codes": list(codes),
                                    "accepts": [float(x) for x in accepts], "examples": examples})
    return [AttributeChange(code, kept, gained, lost, images, float("nan") if corr is None else float(corr),
                            list(gained_ids), list(lost_ids))
            for code, kept, gained, lost, images, corr, gained_ids, lost_ids in rows]


def bytes_on_disk(store: "Statements") -> int:
    return int(store.scalar("SELECT sum(bytes_on_disk) FROM system.parts WHERE database = 'columnist' AND active"))


def delete_model_rows(store: "Statements", model: str) -> dict[str, int]:
    """Delete every row of ``model`` (mutations that rewrite the parts, waited for, so the
    space is free when this returns); the rows deleted per table."""
    deleted = {}
    for table in MODEL_TABLES:
        deleted[table] = int(store.scalar(f"SELECT count() FROM columnist.{table} WHERE model = {{m:String}}",
                                          {"m": model}))
        if deleted[table]:
            store.command(f"ALTER TABLE columnist.{table} DELETE WHERE model = {{m:String}}", {"m": model},
                          settings={"mutations_sync": 2})
    store.command("DELETE FROM columnist.replay_checkpoint WHERE vocab_name = '' AND job = {j:String}",
                  {"j": JOB_PREFIX + model})
    return deleted
