-- vigile's schema, version 3: signing keys (`vigile keys rotate | retire`).
--
-- One row per key that was ever part of a rotation: the rotated keys, and
-- the configuration's key once a rotation set it aside (its private part
-- stays in the configuration: `material` NULL). `material` is the private
-- part, `sealed:v1:...` (AES-256-GCM under VIGILE_KEY_ENCRYPTION_KEY) or
-- `plain:...` when that variable is not set; it is erased when the key is
-- retired. At most one key is `active` (the unique index). `version` is
-- taken from `signing_keys_version` by every write, under an advisory lock
-- (src/store/postgres/keys.rs): the replicas poll max(version) and reload
-- the keys when it moved.
CREATE SEQUENCE signing_keys_version;
CREATE TABLE signing_keys (
    kid            text   COLLATE "C" PRIMARY KEY,
    algorithm      text   NOT NULL,
    state          text   NOT NULL CHECK (state IN ('active', 'verify_only', 'retired')),
    created_at     bigint,
    deactivated_at bigint,
    retired_at     bigint,
    material       text,
    version        bigint NOT NULL
);
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys ((state)) WHERE state = 'active';
