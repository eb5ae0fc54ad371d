-- API keys: bearer tokens that each see one tenant. Only a SHA-256 of the key is kept (the
-- keys are 256-bit random, so a slow hash adds nothing); the key id is public and indexed.

CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    tenant_id   text NOT NULL,
    key_hash    bytea NOT NULL,
    label       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE INDEX api_keys_tenant ON api_keys (tenant_id);
