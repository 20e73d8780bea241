-- vigile's schema, version 4: the accounts imported from the system vigile
-- replaced, and the refresh tokens of that system
-- replaced (`vigile import django`, `migration.simplejwt`), by `jti`: the
-- ones it had blacklisted (imported, `exchanged` false) and the ones
-- exchanged here for a vigile session (`exchanged` true). The primary key
-- makes an exchange happen once across replicas. Rows go once the token
-- has expired (`expires_at`, unix seconds).
CREATE TABLE legacy_tokens (
    jti        text    COLLATE "C" PRIMARY KEY,
    expires_at bigint  NOT NULL,
    exchanged  boolean NOT NULL,
    -- the session it was exchanged for (NULL: blacklisted, or spent by a
    -- logout): a second presentation revokes it
    session_id bytea   CHECK (octet_length(session_id) = 16)
);
CREATE INDEX legacy_tokens_expires_at ON legacy_tokens (expires_at);

-- The accounts `vigile import django` wrote, with the join time they had:
-- only these may be named by the other system's tokens (an account made
-- here under an id the other system also gave later is not theirs).
-- `cut_off`: the other system's tokens issued until then are refused (set
-- when all the account's sessions are revoked: password changed or reset,
-- logout of every session, deactivation).
CREATE TABLE imported_accounts (
    id          bigint PRIMARY KEY,
    date_joined bigint NOT NULL,
    cut_off     bigint NOT NULL DEFAULT 0
);
