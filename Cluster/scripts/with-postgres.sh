#!/usr/bin/env bash
# Runs a command beside a throwaway PostgreSQL server, then stops the server
# and removes its files, whatever the command did.
#
#   Cluster/scripts/with-postgres.sh swift test --package-path Cluster
#
# The command sees:
#   MULTIPROCESSING_CLUSTER_URL   postgres://postgres:PASSWORD@127.0.0.1:PORT/postgres
#   MULTIPROCESSING_TEST_PG_RESTART  a script that restarts the server (for the tests)
#   MULTIPROCESSING_TEST_NETNS, _NETNS_URL, _PARTITION  (as root) a network
#       namespace, the server's URL from inside it, a script that cuts its link
# PG_DURABLE=1 keeps the server's durable commits (fsync, synchronous_commit on).
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

# Tests run with commits that are not flushed (fast, and a restart then loses
# the last acknowledged ones: the cluster must survive that too); benchmarks
# set PG_DURABLE=1 for durable commits, the server's defaults.
if [ "${PG_DURABLE:-0}" = 1 ]; then
    DURABILITY=""
else
    DURABILITY="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
fi
OPTIONS="-p $PORT -k $DIR -c listen_addresses=127.0.0.1 $DURABILITY -c max_connections=200"
# As root, a network namespace with a veth pair to this one, for the
# partition test: a node started in it reaches the server at $NET_HOST, and
# `partition.sh down` cuts the link silently (no reset, packets just stop).
NETNS=""
if [ "$(id -u)" = 0 ] && command -v ip >/dev/null 2>&1; then
    NETNS="mp-pg-$PORT"
    NET_A=$(( PORT % 250 )); NET_B=$(( (PORT / 250) % 64 * 4 ))
    NET_HOST="10.213.$NET_A.$(( NET_B + 1 ))"; NET_NODE="10.213.$NET_A.$(( NET_B + 2 ))"
    if ip netns add "$NETNS" 2>/dev/null \
        && ip link add "mph$PORT" type veth peer name "mpn$PORT" \
        && ip link set "mpn$PORT" netns "$NETNS" \
        && ip addr add "$NET_HOST/30" dev "mph$PORT" && ip link set "mph$PORT" up \
        && ip -n "$NETNS" addr add "$NET_NODE/30" dev "mpn$PORT" && ip -n "$NETNS" link set "mpn$PORT" up \
        && ip -n "$NETNS" link set lo up; then
        echo "host all all $NET_NODE/32 scram-sha-256" >> "$DIR/data/pg_hba.conf"
        OPTIONS="${OPTIONS/listen_addresses=127.0.0.1/listen_addresses=127.0.0.1,$NET_HOST}"
        cat > "$DIR/partition.sh" <<PARTITION
#!/bin/sh
# partition.sh down|up: cuts or restores the namespace's link to the server.
exec ip link set mph$PORT "\$1"
PARTITION
        chmod 755 "$DIR/partition.sh"
    else
        echo "with-postgres: no network namespace (the partition test will be skipped)" >&2
        ip link del "mph$PORT" 2>/dev/null || true
        ip netns del "$NETNS" 2>/dev/null || true
        NETNS=""
    fi
fi

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
    local status=$?
    # A failed command: the server's own errors say what it refused.
    if [ "$status" != 0 ] && [ -f "$DIR/log" ]; then
        echo "with-postgres: the command failed ($status); the server's errors:" >&2
        grep -E "ERROR|FATAL|PANIC" "$DIR/log" | grep -v "terminating connection due to administrator" | tail -40 >&2 || true
    fi
    as_server "$PGBIN/pg_ctl -D $DIR/data -m fast -w stop" >/dev/null 2>&1 || true
    if [ -n "$NETNS" ]; then
        ip link del "mph$PORT" 2>/dev/null || true
        ip netns del "$NETNS" 2>/dev/null || true
    fi
    rm -rf "$DIR"
}
trap stop EXIT

as_server "$PGBIN/pg_ctl -D $DIR/data -l $DIR/log -w -o '$OPTIONS' start" >/dev/null \
    || { cat "$DIR/log" >&2; exit 1; }
echo "with-postgres: PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT" >&2

export MULTIPROCESSING_CLUSTER_URL="postgres://postgres:$PASSWORD@127.0.0.1:$PORT/postgres"
export MULTIPROCESSING_TEST_PG_RESTART="$DIR/restart.sh"
if [ -n "$NETNS" ]; then
    export MULTIPROCESSING_TEST_NETNS="$NETNS"
    export MULTIPROCESSING_TEST_NETNS_URL="postgres://postgres:$PASSWORD@$NET_HOST:$PORT/postgres"
    export MULTIPROCESSING_TEST_PARTITION="$DIR/partition.sh"
fi
"$@"
