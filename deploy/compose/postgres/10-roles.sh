#!/bin/sh
# Runs once, when the database volume is first initialised (docker-entrypoint-initdb.d).
# Roles: `nattillsyn` owns the schema and is what the services log in as; `grafana_reader`
# may read only what grants.sql grants (no resident data). Passwords come from compose
# secrets ($SECRETS_DIR, default /run/secrets); none is printed.
set -eu
secrets=${SECRETS_DIR:-/run/secrets}
app_pw=$(cat "$secrets/db_app_password")
reader_pw=$(cat "$secrets/grafana_reader_password")
psql -v ON_ERROR_STOP=1 -v app_pw="$app_pw" -v reader_pw="$reader_pw" \
     --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE nattillsyn LOGIN PASSWORD :'app_pw';
CREATE ROLE grafana_reader LOGIN PASSWORD :'reader_pw' CONNECTION LIMIT 10;
GRANT CONNECT, CREATE ON DATABASE :"DBNAME" TO nattillsyn;
GRANT CONNECT ON DATABASE :"DBNAME" TO grafana_reader;
ALTER SCHEMA public OWNER TO nattillsyn;
-- TimescaleDB is created here, as superuser, so the services' role needs no superuser.
SELECT 'CREATE EXTENSION IF NOT EXISTS timescaledb'
WHERE EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') \gexec
SQL
