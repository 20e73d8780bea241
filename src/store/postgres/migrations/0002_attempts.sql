-- vigile's schema, version 2: throttle counters shared by the replicas.
--
-- The login limit per account and the reset limit per email hold across
-- replicas: each attempt is counted here before its password check runs
-- (src/store/postgres/attempts.rs). `key` is the SHA-256 of the throttled
-- key (an address as typed can be long: the row stays small); `scope` names
-- the throttle. A window opens at the first attempt and ends at
-- `expires_ms` (milliseconds, on the database's clock, so that replicas
-- whose clocks differ count the same window); `count` is the attempts
-- counted in it (failed, or still being checked).
CREATE TABLE attempts (
    scope      text   COLLATE "C" NOT NULL,
    key        bytea  NOT NULL CHECK (octet_length(key) = 32),
    expires_ms bigint NOT NULL,
    count      integer NOT NULL CHECK (count >= 0),
    PRIMARY KEY (scope, key)
);
CREATE INDEX attempts_expires_ms ON attempts (expires_ms);
