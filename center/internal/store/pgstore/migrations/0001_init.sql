-- Schema version 1 of the center's store (center/internal/store/pgstore).
-- Identifiers use COLLATE "C" so that ORDER BY is byte order, the order the
-- store contract promises, whatever the database's default collation.

CREATE TABLE kiosks (
    id            text COLLATE "C" PRIMARY KEY,
    store_name    text NOT NULL,
    store_code    text NOT NULL,
    chain         text NOT NULL,
    prefecture    text NOT NULL,
    region        text NOT NULL,
    cert_serial   text NOT NULL,
    cert_sha256   text NOT NULL,
    enrolled_at   timestamptz NOT NULL,
    status        text NOT NULL,
    status_reason text NOT NULL,
    status_at     timestamptz NOT NULL,
    last_seen     timestamptz
);

-- Every client certificate a kiosk was enrolled or renewed with: a kiosk
-- that lost the answer to its renewal still connects with the previous one
-- until it expires. The primary key keeps a certificate to one kiosk.
CREATE TABLE kiosk_certs (
    cert_sha256 text PRIMARY KEY,
    kiosk_id    text COLLATE "C" NOT NULL REFERENCES kiosks (id)
);

-- One-time enrollment codes (only their SHA-256).
CREATE TABLE enrollment_codes (
    kiosk_id   text COLLATE "C" PRIMARY KEY,
    store_name text NOT NULL,
    store_code text NOT NULL,
    chain      text NOT NULL,
    prefecture text NOT NULL,
    region     text NOT NULL,
    code_hash  text NOT NULL,
    created    timestamptz NOT NULL,
    expires    timestamptz NOT NULL,
    used_at    timestamptz,
    attempts   integer NOT NULL
);

CREATE TABLE municipalities (
    code          text COLLATE "C" PRIMARY KEY,
    name_ja       text NOT NULL,
    name_en       text NOT NULL,
    authority_ja  text NOT NULL,
    authority_en  text NOT NULL,
    participating boolean NOT NULL,
    kana          text NOT NULL,
    kind          text NOT NULL
);

CREATE TABLE signing_keys (
    kid        text COLLATE "C" PRIMARY KEY,
    purpose    text NOT NULL,
    format     text NOT NULL,
    public_key bytea NOT NULL,
    key_label  text NOT NULL,
    created    timestamptz NOT NULL,
    not_after  timestamptz NOT NULL,
    status     text NOT NULL,
    status_at  timestamptz NOT NULL
);

-- The audit log: append-only, a hash chain in sequence order. seq and the
-- hashes are assigned under the lock of audit_head's one row, so sequence
-- numbers have no holes and the chain follows commit order across every
-- center instance.
CREATE TABLE audit_head (
    id   integer PRIMARY KEY CHECK (id = 1),
    seq  bigint NOT NULL,
    hash text NOT NULL
);
INSERT INTO audit_head VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
CREATE TABLE audit_events (
    seq            bigint PRIMARY KEY,
    time           timestamptz NOT NULL,
    type           text NOT NULL,
    kiosk_id       text COLLATE "C" NOT NULL,
    store_code     text NOT NULL,
    municipality   text NOT NULL,
    kind           text NOT NULL,
    copies         integer NOT NULL,
    certificate_id text NOT NULL,
    request_id     text COLLATE "C" NOT NULL,
    result         text NOT NULL,
    latency_ns     bigint NOT NULL,
    operator       text NOT NULL,
    source         text NOT NULL,
    object         text NOT NULL,
    prev_hash      text NOT NULL,
    hash           text NOT NULL
);
CREATE INDEX audit_events_time ON audit_events (time, seq);
CREATE INDEX audit_events_kiosk ON audit_events (kiosk_id, time, seq) WHERE kiosk_id <> '';
CREATE INDEX audit_events_request ON audit_events (request_id, time, seq) WHERE request_id <> '';
CREATE INDEX audit_events_municipality ON audit_events (municipality, time, seq) WHERE municipality <> '';
CREATE INDEX audit_events_certificate ON audit_events (certificate_id) WHERE certificate_id <> '';
CREATE INDEX audit_events_operator ON audit_events (operator, time, seq) WHERE operator <> '';

-- Settlement counters, updated in the transaction that appends the event.
-- Each writer adds to one of several shards of a counter so concurrent
-- transactions (several center instances) rarely wait on one row; readers
-- sum the shards.
CREATE TABLE audit_daily (
    day          text COLLATE "C" NOT NULL,
    municipality text COLLATE "C" NOT NULL,
    type         text COLLATE "C" NOT NULL,
    kind         text COLLATE "C" NOT NULL,
    shard        smallint NOT NULL,
    events       bigint NOT NULL,
    copies       bigint NOT NULL,
    PRIMARY KEY (day, municipality, type, kind, shard)
);

-- Signed checkpoints of the chain's head.
CREATE TABLE audit_checkpoints (
    seq       bigint PRIMARY KEY,
    hash      text NOT NULL,
    time      timestamptz NOT NULL,
    key_id    text NOT NULL,
    signature bytea NOT NULL
);

CREATE TABLE revocations (
    certificate_id text COLLATE "C" PRIMARY KEY,
    kid            text NOT NULL,
    revoked_at     timestamptz NOT NULL,
    reason         text NOT NULL
);
CREATE INDEX revocations_kid ON revocations (kid);

-- The request register: the primary key is what makes a request ID issue
-- at most once across every center instance.
CREATE TABLE requests (
    id              text COLLATE "C" PRIMARY KEY,
    kiosk_id        text NOT NULL,
    fingerprint     text NOT NULL,
    municipality    text NOT NULL,
    kind            text NOT NULL,
    copies          integer NOT NULL,
    state           text NOT NULL,
    attempt         integer NOT NULL,
    code            text NOT NULL,
    certificate_ids text[],
    outcome         text NOT NULL,
    claimed_at      timestamptz NOT NULL,
    finished_at     timestamptz,
    settled_at      timestamptz,
    replay          bytea
);
CREATE INDEX requests_claimed ON requests (claimed_at);
CREATE INDEX requests_replay ON requests (finished_at) WHERE replay IS NOT NULL;

-- Operator accounts: the store keeps each as a document it does not
-- interpret (password hash, sealed second factor), keyed by its ID.
CREATE TABLE operators (
    id  text COLLATE "C" PRIMARY KEY,
    doc jsonb NOT NULL
);

-- Operations API tokens: only their SHA-256.
CREATE TABLE api_tokens (
    id       text COLLATE "C" PRIMARY KEY,
    operator text COLLATE "C" NOT NULL REFERENCES operators (id),
    sha256   text NOT NULL UNIQUE,
    label    text NOT NULL,
    created  timestamptz NOT NULL,
    expires  timestamptz,
    revoked  timestamptz
);
