#!/usr/bin/env bash
# Runs a command beside a throwaway PostgreSQL server, then stops the server
# and removes its files, whatever the command did.
#
#   Cluster/scripts/with-postgres.sh swift test --package-path Cluster
#
# The command sees:
#   MULTIPROCESSING_CLUSTER_URL   postgres://postgres:PASSWORD@127.0.0.1:PORT/postgres
#   MULTIPROCESSING_TEST_PG_RESTART  a script that restarts the server (for the tests)
# Installs Debian's postgresql when its server programs are missing (as root).
# initdb and pg_ctl refuse root: as root the server runs as the postgres user.
set -euo pipefail

pgbin() {
    local dir
    dir=$(pg_config --bindir 2>/dev/null || true)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then echo "$dir"; return; fi
    for dir in /usr/lib/postgresql/*/bin; do
        if [ -x "$dir/initdb" ]; then echo "$dir"; return; fi
    done
}

PGBIN=$(pgbin)
if [ -z "$PGBIN" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "with-postgres: no PostgreSQL server programs (initdb); install postgresql" >&2
        exit 1
    fi
    echo "with-postgres: installing postgresql from Debian's packages" >&2
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >/dev/null
    PGBIN=$(pgbin)
fi

DIR=$(mktemp -d /tmp/mp-postgres.XXXXXX)
chmod 755 "$DIR"
as_server() {
    if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi
}
if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$DIR"; fi

# A free loopback port: ask the kernel for one.
PORT=${MULTIPROCESSING_TEST_PG_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
PASSWORD=cluster-test-password

as_server "echo $PASSWORD > $DIR/pwfile && $PGBIN/initdb -D $DIR/data -U postgres --pwfile=$DIR/pwfile \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 --no-sync >$DIR/initdb.log 2>&1" \
    || { cat "$DIR/initdb.log" >&2; exit 1; }

OPTIONS="-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
cat > "$DIR/restart.sh" <<RESTART
#!/bin/sh
# Stops the server at once (as a crash would) and starts it again.
set -e
if [ "\$(id -u)" = 0 ]; then run() { su postgres -s /bin/sh -c "\$1"; }; else run() { sh -c "\$1"; }; fi
run "$PGBIN/pg_ctl -D $DIR/data -m immediate -w stop" >/dev/null
sleep \${1:-0}
run "$PGBIN/pg_ctl -D $DIR/data -l $DIR/log -w -o '$OPTIONS' start" >/dev/null
RESTART
chmod 755 "$DIR/restart.sh"

stop() {
    as_server "$PGBIN/pg_ctl -D $DIR/data -m fast -w stop" >/dev/null 2>&1 || true
    rm -rf "$DIR"
}
trap stop EXIT

as_server "$PGBIN/pg_ctl -D $DIR/data -l $DIR/log -w -o '$OPTIONS' start" >/dev/null \
    || { cat "$DIR/log" >&2; exit 1; }
echo "with-postgres: PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT" >&2

export MULTIPROCESSING_CLUSTER_URL="postgres://postgres:$PASSWORD@127.0.0.1:$PORT/postgres"
export MULTIPROCESSING_TEST_PG_RESTART="$DIR/restart.sh"
"$@"
