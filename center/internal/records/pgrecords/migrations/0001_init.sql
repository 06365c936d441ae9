-- Schema version 1 of the records on PostgreSQL (center/internal/records/pgrecords).
-- Versions of this list are kept in records_schema_migrations, apart from the
-- store's schema_migrations. Nothing here is personal data in clear: record
-- keys are HMACs of My Numbers under a region's lookup key, values sealed
-- records, key entries region keys wrapped under the master key (which never
-- reaches the database). Codes and identifiers use COLLATE "C" so lists come
-- back in byte order.

-- The records' metadata: one row.
CREATE TABLE records_meta (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    format       smallint NOT NULL,
    master_check bytea NOT NULL,
    master_id    text NOT NULL
);

-- A region per municipality: its identity, wrapped keys, and the
-- generations lookups read (overlay 0: none).
CREATE TABLE records_regions (
    code        text COLLATE "C" PRIMARY KEY,
    id          bytea NOT NULL,
    key_version integer NOT NULL,
    key_entry   bytea NOT NULL,
    active      bigint NOT NULL,
    overlay     bigint NOT NULL DEFAULT 0,
    records     bigint NOT NULL,
    serial      bigint NOT NULL
);

-- The highest key version a municipality's region ever had: it outlives
-- the region, so a region created again never reuses a version.
CREATE TABLE records_key_versions (
    code        text COLLATE "C" PRIMARY KEY,
    key_version integer NOT NULL
);

-- Generations: 1 staging, 2 built, 3 live (a region's active generation
-- or overlay), 4 retired (to drop). A staging generation's runs are in an
-- unlogged table of its own, records_stage_<gen>, dropped once it is built.
CREATE SEQUENCE records_gen_seq;
CREATE TABLE records_gens (
    gen       bigint PRIMARY KEY,
    state     smallint NOT NULL CHECK (state BETWEEN 1 AND 4),
    code      text COLLATE "C" NOT NULL,
    heartbeat timestamptz NOT NULL,
    staged    bigint NOT NULL DEFAULT 0
);
CREATE INDEX records_gens_state ON records_gens (state, heartbeat);

-- Every generation's records: key → sealed record; a NULL value removes
-- the key (an overlay's removals). A build inserts a new generation's
-- keys in order, so they append at the index's right edge. Room is left
-- on each page for flag updates to stay on their page.
CREATE TABLE records_items (
    gen   bigint NOT NULL,
    key   bytea NOT NULL,
    value bytea,
    PRIMARY KEY (gen, key)
) WITH (fillfactor = 90);

-- The operations log (JSON, no personal data).
CREATE TABLE records_log (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    op  json NOT NULL
);
