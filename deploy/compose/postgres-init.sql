-- One database per service that stores anything.
CREATE DATABASE casemesh_tickets;
CREATE DATABASE casemesh_notifier;
CREATE DATABASE casemesh_evidence;
CREATE DATABASE casemesh_appeals;
CREATE DATABASE casemesh_reports;
CREATE DATABASE casemesh_casequeue;
CREATE DATABASE casemesh_helpcenter;
CREATE DATABASE casemesh_keys;

-- The key database's tables, made by the operator (the services only read and
-- write rows): casemesh.platform.personal.postgres.SCHEMA.
\connect casemesh_keys
CREATE TABLE IF NOT EXISTS personal_keys ( key_id uuid PRIMARY KEY, person text NOT NULL, master_id text, wrapped bytea, created_at timestamptz NOT NULL DEFAULT now(), erased_at timestamptz, CONSTRAINT personal_keys_wrapped_until_erased CHECK ((erased_at IS NULL) = (wrapped IS NOT NULL) AND (erased_at IS NULL) = (master_id IS NOT NULL)));
CREATE UNIQUE INDEX IF NOT EXISTS personal_keys_current ON personal_keys (person) WHERE erased_at IS NULL;
CREATE INDEX IF NOT EXISTS personal_keys_master ON personal_keys (master_id) WHERE erased_at IS NULL;
CREATE TABLE IF NOT EXISTS personal_erasures (id bigserial PRIMARY KEY, event_id text NOT NULL UNIQUE, person text NOT NULL, ce_type text NOT NULL, payload bytea NOT NULL, created_at timestamptz NOT NULL, published_at timestamptz);
CREATE INDEX IF NOT EXISTS personal_erasures_unpublished ON personal_erasures (id) WHERE published_at IS NULL;
