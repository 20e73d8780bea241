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
    exchanged  boolean NOT NULL
);
CREATE INDEX legacy_tokens_expires_at ON legacy_tokens (expires_at);

-- The accounts `vigile import django` wrote, with the join time they had:
-- only these may be named by the other system's tokens (an account made
-- here under an id the other system also gave later is not theirs).
CREATE TABLE imported_accounts (
    id          bigint PRIMARY KEY,
    date_joined bigint NOT NULL
);
