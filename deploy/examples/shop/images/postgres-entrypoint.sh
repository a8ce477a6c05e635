#!/bin/sh
# The shop's PostgreSQL entry point. As root it makes $PGDATA belong to the
# postgres user (a fresh named volume belongs to root) and runs itself again
# as that user; as postgres it initializes the cluster on the first start and
# then runs the server on all addresses, on $PGPORT, turning the engine's
# SIGTERM into PostgreSQL's fast shutdown.
#
# First start: superuser "postgres" (local connections only, trusted), role
# $POSTGRES_USER with password $POSTGRES_PASSWORD owning database
# $POSTGRES_DB; every TCP client authenticates with scram-sha-256.
#
# Environment: PGDATA (/var/lib/postgresql/data/pgdata), PGPORT (5432),
# POSTGRES_USER (shop), POSTGRES_DB ($POSTGRES_USER), POSTGRES_PASSWORD
# (required on the first start), or POSTGRES_PASSWORD_FILE: a file that
# holds it (its first line), such as a secret at /run/secrets/db_pass, as
# the official image reads it.
set -eu

: "${PGDATA:=/var/lib/postgresql/data/pgdata}"
: "${PGPORT:=5432}"
: "${POSTGRES_USER:=shop}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
export PGDATA PGPORT

PG_UID=999

if [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA"
	chown "$PG_UID:$PG_UID" "$(dirname "$PGDATA")" "$PGDATA"
	chmod 0700 "$PGDATA"
	exec /usr/bin/setpriv --reuid="$PG_UID" --regid="$PG_UID" --clear-groups "$0" "$@"
fi

name_ok() {
	case $1 in
	'' | *[!a-z0-9_]* | [0-9]*) return 1 ;;
	esac
}

# POSTGRES_PASSWORD_FILE: read as the postgres user (a secret may be
# readable by it alone).
if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
	if [ -n "${POSTGRES_PASSWORD:-}" ]; then
		echo "postgres: both POSTGRES_PASSWORD and POSTGRES_PASSWORD_FILE are set" >&2
		exit 1
	fi
	POSTGRES_PASSWORD=
	IFS= read -r POSTGRES_PASSWORD <"$POSTGRES_PASSWORD_FILE" || [ -n "$POSTGRES_PASSWORD" ] || {
		echo "postgres: cannot read POSTGRES_PASSWORD_FILE $POSTGRES_PASSWORD_FILE" >&2
		exit 1
	}
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	name_ok "$POSTGRES_USER" || { echo "postgres: POSTGRES_USER: lowercase letters, digits and _" >&2; exit 1; }
	name_ok "$POSTGRES_DB" || { echo "postgres: POSTGRES_DB: lowercase letters, digits and _" >&2; exit 1; }
	if [ -z "${POSTGRES_PASSWORD:-}" ]; then
		echo "postgres: POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE must be set for the first start" >&2
		exit 1
	fi
	if [ -n "$(ls -A "$PGDATA")" ]; then
		echo "postgres: $PGDATA holds files but no database cluster; not touching it" >&2
		exit 1
	fi
	echo "postgres: first start: initializing $PGDATA"
	# The cluster is made next to $PGDATA and moved into place when complete,
	# so that a start interrupted here begins again from scratch.
	new="$PGDATA.new"
	rm -rf "$new"
	# Its output only on failure: without locale(1) in the image it warns
	# about system locales, which a --no-locale cluster does not use.
	if ! initdb -D "$new" -U postgres -E UTF8 --no-locale \
		--auth-local=trust --auth-host=scram-sha-256 >/tmp/initdb.log 2>&1; then
		cat /tmp/initdb.log >&2
		exit 1
	fi
	printf '%s\n' 'host all all 0.0.0.0/0 scram-sha-256' 'host all all ::/0 scram-sha-256' \
		>>"$new/pg_hba.conf"
	pw=$(printf '%s' "$POSTGRES_PASSWORD" | sed "s/'/''/g")
	# Single-user mode: one statement per line, no server listening yet.
	postgres --single -D "$new" postgres >/tmp/single.log 2>&1 <<SQL
CREATE ROLE $POSTGRES_USER LOGIN PASSWORD '$pw';
CREATE DATABASE $POSTGRES_DB OWNER $POSTGRES_USER;
SQL
	if grep -q 'ERROR' /tmp/single.log; then
		grep 'ERROR' /tmp/single.log >&2
		exit 1
	fi
	rmdir "$PGDATA"
	mv "$new" "$PGDATA"
	echo "postgres: database $POSTGRES_DB and role $POSTGRES_USER created"
fi

# The engine stops a container with SIGTERM, which is PostgreSQL's "smart"
# shutdown: it would wait for every client (the API's pooled connections) to
# leave. SIGINT is its fast shutdown: clients are disconnected, the data is
# checkpointed. (`docker import` cannot set STOPSIGNAL, so the shell relays.)
postgres -D "$PGDATA" -c listen_addresses='*' -p "$PGPORT" "$@" &
pid=$!
trap 'kill -INT "$pid" 2>/dev/null' TERM INT
status=0
wait "$pid" || status=$?
# A trapped signal ends the first wait; the second one waits for the exit.
while kill -0 "$pid" 2>/dev/null; do
	wait "$pid" && status=0 || status=$?
done
exit "$status"
