#!/bin/bash
# Entrypoint of panel-lab/postgres:15, compatible with the official postgres
# image's environment: POSTGRES_USER (default postgres), POSTGRES_PASSWORD,
# POSTGRES_DB (default $POSTGRES_USER), PGDATA (default
# /var/lib/postgresql/data), POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD
# (default scram-sha-256) and /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz.
# The cluster is made with UTF8 encoding and the C locale.
set -Eeuo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
export PGDATA POSTGRES_USER POSTGRES_DB

log() { echo "postgres-entrypoint: $*" >&2; }

# Like the official image: `docker run panel-lab/postgres:15 -c key=value`
# passes server options; anything else is run as a command.
if [ "$#" -eq 0 ] || [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
  exec "$@"
fi

as_postgres() {
  if [ "$(id -u)" = 0 ]; then
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  else
    "$@"
  fi
}

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chmod 00700 "$PGDATA" || true
  chown postgres:postgres /var/run/postgresql
  chmod 03775 /var/run/postgresql
  # A fresh bind-mounted directory belongs to root: hand it to postgres.
  if [ "$(stat -c %u "$PGDATA")" != "$(id -u postgres)" ]; then
    chown -R postgres:postgres "$PGDATA"
  fi
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
    log "Database is uninitialized and superuser password is not specified."
    log "Set POSTGRES_PASSWORD (or POSTGRES_HOST_AUTH_METHOD=trust)."
    exit 1
  fi
  log "initializing $PGDATA (UTF8, locale C) for user $POSTGRES_USER"
  pwfile=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:-}" > "$pwfile"
  chown postgres "$pwfile" 2>/dev/null || true
  # shellcheck disable=SC2086
  as_postgres initdb --username="$POSTGRES_USER" --pwfile="$pwfile" \
    --encoding=UTF8 --locale=C --auth-local=trust --auth-host="$POSTGRES_HOST_AUTH_METHOD" \
    ${POSTGRES_INITDB_ARGS:-} -D "$PGDATA" >/dev/null
  rm -f "$pwfile"
  {
    echo
    echo "# panel-lab: network clients authenticate with a password"
    echo "host all all all $POSTGRES_HOST_AUTH_METHOD"
  } >> "$PGDATA/pg_hba.conf"
  {
    echo "listen_addresses = '*'"
    echo "password_encryption = scram-sha-256"
  } >> "$PGDATA/postgresql.auto.conf"

  # Temporary server on the Unix socket only, for POSTGRES_DB and init scripts.
  as_postgres pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w -t 60 start >/dev/null
  export PGUSER="$POSTGRES_USER" PGHOST=/var/run/postgresql PGDATABASE=postgres
  if [ "$POSTGRES_DB" != postgres ]; then
    if [ -z "$(psql -v ON_ERROR_STOP=1 -tAc "SELECT 1 FROM pg_database WHERE datname = '${POSTGRES_DB//\'/\'\'}'")" ]; then
      psql -v ON_ERROR_STOP=1 -q -c "CREATE DATABASE \"${POSTGRES_DB//\"/\"\"}\""
    fi
  fi
  export PGDATABASE="$POSTGRES_DB"
  for f in /docker-entrypoint-initdb.d/*; do
    [ -e "$f" ] || continue
    case "$f" in
      *.sh) log "running $f"; if [ -x "$f" ]; then "$f"; else . "$f"; fi ;;
      *.sql) log "running $f"; psql -v ON_ERROR_STOP=1 -q -f "$f" ;;
      *.sql.gz) log "running $f"; gunzip -c "$f" | psql -v ON_ERROR_STOP=1 -q ;;
      *) log "ignoring $f" ;;
    esac
  done
  unset PGUSER PGHOST PGDATABASE
  as_postgres pg_ctl -D "$PGDATA" -m fast -w -t 60 stop >/dev/null
  log "init done; ready for start up"
fi

# Like the official image (its entrypoint ends in `exec gosu postgres ...`), the server
# replaces this shell as PID 1, running as postgres: Docker's stop signal (STOPSIGNAL SIGINT,
# PostgreSQL's *fast* shutdown) reaches it directly. A root shell relaying the signal
# instead cannot signal a process of another user once the panel drops CAP_KILL, and every
# stop then waits out the whole grace period before being killed.
if [ "$(id -u)" = 0 ]; then
  exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
fi
exec "$@"
