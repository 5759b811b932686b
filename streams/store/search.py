"""The statements of `columnist search` (workbench.search): a phrase's ranking in the engine.

``search_sql`` ranks with the ``columnist.search`` view (the phrase stored in
``search_phrase``); through a worker's read-only page, which takes no parameters, the ranking
is one statement with the phrase's vector written out as numbers (``inline_ranking``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

RANKED = """
SELECT s.image_id AS image_id, s.probability AS probability, s.logit AS logit,
       if(i.uri != '', i.uri, v.uri) AS uri
FROM ({ranking}) AS s
LEFT JOIN (SELECT image_id, uri FROM columnist.images FINAL) AS i ON i.image_id = s.image_id
LEFT JOIN (SELECT f.frame_id AS frame_id, im.uri AS uri FROM columnist.video_frames AS f FINAL
           INNER JOIN (SELECT image_id, uri FROM columnist.images FINAL) AS im ON im.image_id = f.video_id) AS v
       ON v.frame_id = s.image_id
ORDER BY probability DESC, image_id
LIMIT {top}
"""

STORED = "SELECT image_id, logit, probability FROM columnist.search(phrase = {phrase:String})"


def inline_ranking(embedding: "np.ndarray", logit_scale: float, centre: float, scale: float, model: str) -> str:
    """The ranking as one statement with the vector written out (for a worker's read-only page,
    which takes no parameters): numbers only, formatted here, so nothing else enters the SQL."""
    vector = ",".join(f"{float(x):.8g}" for x in embedding)
    scale, centre, width = float(logit_scale), float(centre), float(scale)
    return (f"SELECT image_id, toFloat32({scale!r} * dotProduct(embedding, [{vector}])) AS logit, "
            f"toFloat32(1 / (1 + exp(-(logit - {centre!r}) / {width!r}))) AS probability "
            f"FROM columnist.image_embedding FINAL WHERE model = {sql_string(model)}")


def count_sql(model: str) -> str:
    """How many embeddings a search over ``model``'s ranks (the page's "showing N of M")."""
    return f"SELECT count() FROM columnist.image_embedding FINAL WHERE model = {sql_string(model)}"


def sql_string(text: str) -> str:
    """``text`` as a ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def search_sql(top: int, ranking: str = STORED) -> str:
    return RANKED.replace("{ranking}", ranking).replace("{top}", str(int(top)))
