-- columnist's ClickHouse schema. Applied idempotently by ClickHouseStore.create_schema
-- (columnist.streams.store.clickhouse), which also migrates stores made by older versions.
-- ${ON_CLUSTER} becomes `ON CLUSTER name` and ${REPLICATED} `Replicated` when
-- COLUMNIST_CLUSTER is set (Replicated engines then take the server's default replica path).
-- Every table is a ReplacingMergeTree: a replayed write replaces, never duplicates
-- (read with FINAL).

CREATE DATABASE IF NOT EXISTS columnist ${ON_CLUSTER};

CREATE TABLE IF NOT EXISTS columnist.images ${ON_CLUSTER}
(
    image_id    String,
    uri         String,
    collection  LowCardinality(String),
    width       UInt32,
    height      UInt32,
    sha256      String,
    ingested_at DateTime64(3, 'UTC'),
    -- sha256 is the content key: an image already stored is not decoded or encoded again
    INDEX sha256_index sha256 TYPE bloom_filter GRANULARITY 4
)
ENGINE = ${REPLICATED}ReplacingMergeTree(ingested_at)
ORDER BY image_id;

ALTER TABLE columnist.images ${ON_CLUSTER} ADD INDEX IF NOT EXISTS sha256_index sha256 TYPE bloom_filter GRANULARITY 4;

-- what an images row is: a still ('image': photo, RAW, ...) or a 'video' (its seconds and
-- the frames sampled of it; each frame's embedding and scores live under its own id)
ALTER TABLE columnist.images ${ON_CLUSTER} ADD COLUMN IF NOT EXISTS kind LowCardinality(String) DEFAULT 'image';
ALTER TABLE columnist.images ${ON_CLUSTER} ADD COLUMN IF NOT EXISTS duration Float32 DEFAULT 0;
ALTER TABLE columnist.images ${ON_CLUSTER} ADD COLUMN IF NOT EXISTS frames UInt32 DEFAULT 0;

-- `bucket` (a hash of image_id) leads the sort key after the model, so a replay chunk
-- (a set of buckets) reads only its own part of the table. Embeddings are stored without
-- compression: unit vectors of floats do not compress, and skipping LZ4 made replay reads
-- about three times faster.
CREATE TABLE IF NOT EXISTS columnist.image_embedding ${ON_CLUSTER}
(
    model      LowCardinality(String),
    image_id   String,
    bucket     UInt8 MATERIALIZED cityHash64(image_id) % 64,
    embedding  Array(Float32) CODEC(NONE),
    created_at DateTime64(3, 'UTC'),
    -- the content this embedding was made from: what "already stored" and reuse check
    sha256     String DEFAULT '',
    -- every ingested batch looks its contents up here: without the index that read the whole
    -- column (34 ms of CPU a batch over 1M embeddings), with it 7 ms (1.8 MB of index per 1M)
    INDEX sha256_index sha256 TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ${REPLICATED}ReplacingMergeTree(created_at)
ORDER BY (model, bucket, image_id);

ALTER TABLE columnist.image_embedding ${ON_CLUSTER} ADD COLUMN IF NOT EXISTS sha256 String DEFAULT '';
ALTER TABLE columnist.image_embedding ${ON_CLUSTER} ADD INDEX IF NOT EXISTS sha256_index sha256 TYPE bloom_filter(0.001) GRANULARITY 1;

-- Scores are keyed by vocabulary, model, image and attribute: vocabularies live side by side
-- (two that share an attribute code never overwrite each other), and so do two models while
-- a store moves from one to the other (the views read the serving model's). An image's rows
-- lie together, so the wide views' pivot (one row per image) groups rows that arrive in
-- order: 0.8 s over 1M images x 50 attributes, against 1.7 s sorted by attribute first; one
-- attribute's rows are then a scan of the vocabulary's (0.3 s over 1M images, from 0.02 s).
CREATE TABLE IF NOT EXISTS columnist.feature_image_attribute ${ON_CLUSTER}
(
    attribute     LowCardinality(String),
    image_id      String,
    score         Float32,
    logit         Float32,
    source        LowCardinality(String),
    model         LowCardinality(String),
    vocab_name    LowCardinality(String),
    vocab_version UInt32,
    updated_at    DateTime64(3, 'UTC')
)
ENGINE = ${REPLICATED}ReplacingMergeTree(updated_at)
ORDER BY (vocab_name, model, image_id, attribute);

-- One row per attribute per applied vocabulary version and model: what each column meant,
-- when, and the centre and scale each model scores it with.
CREATE TABLE IF NOT EXISTS columnist.vocabulary ${ON_CLUSTER}
(
    vocab_name    LowCardinality(String),
    vocab_version UInt32,
    content_hash  String,
    code          String,
    label         String,
    description   String,
    type          LowCardinality(String),
    prompts       Array(String),
    centre        Nullable(Float32),
    scale         Nullable(Float32),
    accept        Float32,
    reject        Float32,
    rule          String,
    model         LowCardinality(String),
    applied_at    DateTime64(3, 'UTC'),
    -- how the centre and scale were chosen: 'default', 'set by hand', or the fit that made them
    calibration_source String DEFAULT 'default'
)
ENGINE = ${REPLICATED}ReplacingMergeTree(applied_at)
ORDER BY (vocab_name, vocab_version, code, model);

ALTER TABLE columnist.vocabulary ${ON_CLUSTER} ADD COLUMN IF NOT EXISTS calibration_source String DEFAULT 'default';

-- The whole document last applied per vocabulary name: what the next version is diffed against.
CREATE TABLE IF NOT EXISTS columnist.vocabulary_applied ${ON_CLUSTER}
(
    vocab_name    LowCardinality(String),
    vocab_version UInt32,
    content_hash  String,
    document      String,
    model         LowCardinality(String),
    applied_at    DateTime64(3, 'UTC')
)
ENGINE = ${REPLICATED}ReplacingMergeTree(applied_at)
ORDER BY vocab_name;

-- Which model the views read (serving), which one a migration moves to (target), and the one
-- served before the last cutover (previous, kept until it is retired), with what loads each (a
-- name or a folder), and the models retired (their rows deleted). One row: the newest wins; a cutover is one insert, so a query sees one
-- model or the other, never a mix.
CREATE TABLE IF NOT EXISTS columnist.model_state ${ON_CLUSTER}
(
    store        LowCardinality(String) DEFAULT 'columnist',
    serving      String,
    serving_ref  String,
    target       String,
    target_ref   String,
    previous     String,
    previous_ref String,
    retired      Array(String),
    changed_at   DateTime64(3, 'UTC')
)
ENGINE = ${REPLICATED}ReplacingMergeTree(changed_at)
ORDER BY store;

CREATE OR REPLACE VIEW columnist.serving_model ${ON_CLUSTER} AS
SELECT argMax(serving, changed_at) AS model FROM columnist.model_state;

-- Images a re-embed job could not read again (their URI no longer resolves, or the file
-- changed): listed by `columnist model migrate` and cutover; they keep the old model's scores.
CREATE TABLE IF NOT EXISTS columnist.reembed_missing ${ON_CLUSTER}
(
    model      LowCardinality(String),
    image_id   String,
    uri        String,
    reason     String,
    noted_at   DateTime64(3, 'UTC')
)
ENGINE = ${REPLICATED}ReplacingMergeTree(noted_at)
ORDER BY (model, image_id);

-- The frames sampled of each video: their ids (Media Fragments: `<video id>#t=<seconds>`)
-- name embeddings and scores like any image's; a video's own scores are the maximum over them.
CREATE TABLE IF NOT EXISTS columnist.video_frames ${ON_CLUSTER}
(
    video_id   String,
    frame_id   String,
    seconds    Float64,
    created_at DateTime64(3, 'UTC')
)
ENGINE = ${REPLICATED}ReplacingMergeTree(created_at)
ORDER BY (video_id, frame_id);

-- Vocabulary documents a worker refused (and dead-lettered): a worker restarting reads the
-- topic from its start, and does not dead-letter the same document again.
CREATE TABLE IF NOT EXISTS columnist.vocabulary_refused ${ON_CLUSTER}
(
    vocab_name  String,
    event_sha256 String,
    reason      String,
    refused_at  DateTime64(3, 'UTC')
)
ENGINE = ${REPLICATED}ReplacingMergeTree(refused_at)
ORDER BY (vocab_name, event_sha256);

-- The attributes of each vocabulary's applied version, with their thresholds (the serving model's rows).
CREATE OR REPLACE VIEW columnist.vocabulary_current ${ON_CLUSTER} AS
SELECT v.*
FROM columnist.vocabulary AS v FINAL
INNER JOIN (SELECT vocab_name, vocab_version, content_hash FROM columnist.vocabulary_applied FINAL) AS a
    ON v.vocab_name = a.vocab_name AND v.vocab_version = a.vocab_version AND v.content_hash = a.content_hash
WHERE v.model = (SELECT model FROM columnist.serving_model);

-- Tier helper: accepted / tentative / rejected from each attribute's current thresholds.
CREATE OR REPLACE VIEW columnist.image_attribute_tier ${ON_CLUSTER} AS
SELECT f.vocab_name AS vocab_name, f.image_id AS image_id, f.attribute AS attribute, f.score AS score,
       multiIf(f.score >= c.accept, 'accepted', f.score <= c.reject, 'rejected', 'tentative') AS tier
FROM columnist.feature_image_attribute AS f FINAL
INNER JOIN columnist.vocabulary_current AS c ON c.vocab_name = f.vocab_name AND c.code = f.attribute
WHERE f.model = (SELECT model FROM columnist.serving_model);

-- Replay progress: a chunk of a replay job that has been written. The job of a vocabulary
-- change is the new document's content hash, so a crashed worker resumes where it stopped.
CREATE TABLE IF NOT EXISTS columnist.replay_checkpoint ${ON_CLUSTER}
(
    vocab_name   LowCardinality(String),
    job          String,
    chunks       UInt32,
    chunk        UInt32,
    score_rows   UInt64,
    started_at   DateTime64(3, 'UTC'),
    done_at      DateTime64(3, 'UTC')
)
ENGINE = ${REPLICATED}ReplacingMergeTree(done_at)
ORDER BY (vocab_name, job, chunks, chunk);

-- Text embeddings of prompts, per model (language '' for the description's own): a prompt
-- goes through the text tower once, whatever re-applies, re-starts or re-tags later.
CREATE TABLE IF NOT EXISTS columnist.prompt_embedding ${ON_CLUSTER}
(
    model      LowCardinality(String),
    language   LowCardinality(String),
    prompt     String,
    embedding  Array(Float32) CODEC(NONE),
    created_at DateTime64(3, 'UTC')
)
ENGINE = ${REPLICATED}ReplacingMergeTree(created_at)
ORDER BY (model, language, prompt);

-- Each frame's score per attribute, with its video and time: "how does `launch` evolve in this video".
CREATE OR REPLACE VIEW columnist.video_frame_scores ${ON_CLUSTER} AS
SELECT fr.video_id AS video_id, fr.seconds AS seconds, fr.frame_id AS frame_id, f.vocab_name AS vocab_name,
       f.attribute AS attribute, f.score AS score
FROM columnist.feature_image_attribute AS f FINAL
INNER JOIN (SELECT video_id, frame_id, seconds FROM columnist.video_frames FINAL
            WHERE video_id IN (SELECT image_id FROM columnist.images)) AS fr ON fr.frame_id = f.image_id
WHERE f.model = (SELECT model FROM columnist.serving_model);

-- Segments: per video and attribute, the time ranges where it is accepted (successive accepted
-- frames merged; a range ends where the next sampled frame is not accepted, or at the video's
-- end). "Where in this video is the launch" is one query:
--   SELECT start_s, end_s FROM columnist.video_segments WHERE video_id = 'x' AND attribute = 'launch'
CREATE OR REPLACE VIEW columnist.video_segments ${ON_CLUSTER} AS
SELECT video_id, vocab_name, attribute, min(seconds) AS start_s,
       if(max(next_s) > max(seconds), max(next_s), max(duration)) AS end_s, count() AS frames, max(score) AS peak
FROM (
    SELECT s.video_id AS video_id, s.vocab_name AS vocab_name, s.attribute AS attribute, s.seconds AS seconds,
           s.score AS score, s.score >= c.accept AS accepted, i.duration AS duration,
           leadInFrame(s.seconds, 1, 0) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS next_s,
           sum(toUInt32(s.score < c.accept)) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS run
    FROM columnist.video_frame_scores AS s
    INNER JOIN columnist.vocabulary_current AS c ON c.vocab_name = s.vocab_name AND c.code = s.attribute
    INNER JOIN (SELECT image_id, duration FROM columnist.images FINAL) AS i ON i.image_id = s.video_id
    WINDOW w AS (PARTITION BY s.video_id, s.vocab_name, s.attribute ORDER BY s.seconds)
)
WHERE accepted
GROUP BY video_id, vocab_name, attribute, run;

-- Phrases searched with `columnist search` (any text, not only a vocabulary's), per model: the
-- prompt ensemble's embedding and the calibration it was scored with.
CREATE TABLE IF NOT EXISTS columnist.search_phrase ${ON_CLUSTER}
(
    model       LowCardinality(String),
    phrase      String,
    embedding   Array(Float32) CODEC(NONE),
    logit_scale Float32,
    centre      Float32,
    scale       Float32,
    created_at  DateTime64(3, 'UTC')
)
ENGINE = ${REPLICATED}ReplacingMergeTree(created_at)
ORDER BY (model, phrase);

-- Ranking by a phrase from SQL, once `columnist search PHRASE` has encoded it:
--   SELECT image_id, probability FROM columnist.search(phrase = 'a rocket on the launch pad')
--   ORDER BY probability DESC LIMIT 20
CREATE OR REPLACE VIEW columnist.search ${ON_CLUSTER} AS
SELECT e.image_id AS image_id, toFloat32(p.logit_scale * dotProduct(e.embedding, p.embedding)) AS logit,
       toFloat32(1 / (1 + exp(-(logit - p.centre) / p.scale))) AS probability
FROM columnist.image_embedding AS e FINAL
INNER JOIN (SELECT model, embedding, logit_scale, centre, scale FROM columnist.search_phrase FINAL
            WHERE phrase = {phrase:String}) AS p ON p.model = e.model
WHERE e.model = (SELECT model FROM columnist.serving_model);
