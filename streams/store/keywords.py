"""The statement `columnist sidecars` reads: each stored image with a file:// URI and the
attributes it is accepted (or tentative) for, with their labels, page by page. A label is a
keyword there: a blank one is the attribute's code, and '|' (which separates the levels of a
photo manager's keyword path: columnist|vocabulary|label) is written '/'."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from columnist.store import Statements

KEYWORDS = """
SELECT i.image_id AS image_id, i.uri AS uri, t.vocab_name AS vocab_name, t.attribute AS attribute,
       if(trimBoth(c.label) != '', replaceAll(trimBoth(c.label), '|', '/'), t.attribute) AS label,
       t.score AS score, t.tier AS tier
FROM (SELECT image_id, uri FROM columnist.images FINAL
      WHERE startsWith(uri, 'file://') AND image_id > {after:String} {only} ORDER BY image_id LIMIT {page:UInt32}) AS i
LEFT JOIN (SELECT image_id, vocab_name, attribute, score, tier FROM columnist.image_attribute_tier
           WHERE tier IN {tiers:Array(String)} AND vocab_name IN {vocabularies:Array(String)}) AS t
       ON t.image_id = i.image_id
LEFT JOIN (SELECT vocab_name, code, label FROM columnist.vocabulary_current) AS c
       ON c.vocab_name = t.vocab_name AND c.code = t.attribute
ORDER BY i.image_id, t.vocab_name, t.attribute
"""


def keywords_page(store: "Statements", after: str, page: int, tiers: Sequence[str], vocabularies: Sequence[str],
                  image_ids: Sequence[str] | None = None) -> list[tuple]:
    """(image_id, uri, vocab_name, attribute, label, score, tier) of the next ``page`` images
    after ``after`` (one row per keyword; an image without any has one row of empty ones)."""
    only = "AND image_id IN {ids:Array(String)}" if image_ids is not None else ""
    _, rows = store.query(KEYWORDS.replace("{only}", only), {"after": after, "page": page, "tiers": list(tiers),
                                                             "vocabularies": list(vocabularies),
                                                             "ids": list(image_ids or [])})
    return rows
