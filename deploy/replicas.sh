#!/usr/bin/env bash
# Two vigile replicas on one PostgreSQL, on loopback, to try what a logout on
# one does on the other:
#   PostgreSQL (Debian's package) in a temp directory on 127.0.0.1:55432,
#     run as the `postgres` user when started as root (it refuses root);
#   replica A on http://localhost:8080 (admin 127.0.0.1:9090),
#   replica B on http://localhost:8081 (admin 127.0.0.1:9091),
#   the demo upstreams `stocks` (:9001) and `jobs` (:9002).
# Both replicas share the database and one signing secret. Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh
ensure_build_deps
ensure_test_deps

cargo build --release --bins

PG_PORT=${PG_PORT:-55432}
bin=$(dirname "$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -1)")
work=$(mktemp -d /tmp/vigile-replicas.XXXXXX)
chmod 755 "$work"
as_pg=()
if [ "$(id -u)" = 0 ]; then
  as_pg=(runuser -u postgres --)
  chown postgres "$work"
fi

pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  "${as_pg[@]}" "$bin/pg_ctl" -D "$work/pg" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

"${as_pg[@]}" "$bin/initdb" -D "$work/pg" -U vigile --auth=trust >/dev/null
"${as_pg[@]}" "$bin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w \
  -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$work" start >/dev/null
"${as_pg[@]}" "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U vigile vigile

export VIGILE_DATABASE_URL="postgres://vigile@127.0.0.1:$PG_PORT/vigile"
export VIGILE_JWT_SECRET=${VIGILE_JWT_SECRET:-$(head -c 32 /dev/urandom | base64)}

for name in a b; do
  if [ "$name" = a ]; then port=8080 admin=9090; else port=8081 admin=9091; fi
  mkdir -p "$work/$name"
  # The sample config, with this replica's addresses, folder and the
  # PostgreSQL store (its URL from VIGILE_DATABASE_URL).
  sed -e "s|listen: \"0.0.0.0:8080\"|listen: \"0.0.0.0:$port\"|" \
      -e "s|listen: \"127.0.0.1:9090\"|listen: \"127.0.0.1:$admin\"|" \
      -e "s|kind: redb  |kind: postgres|" \
      -e "s|path: \"data/vigile.redb\"|path: \"$work/$name/vigile.redb\"|" \
      -e "s|dir: data/outbox|dir: $work/$name/outbox|" \
      config/vigile.yaml > "$work/$name.yaml"
  target/release/vigile check-config --config "$work/$name.yaml" >&2
done

target/release/vigile-demo-upstream --listen 127.0.0.1:9001 --name stocks &
pids+=($!)
target/release/vigile-demo-upstream --listen 127.0.0.1:9002 --name jobs &
pids+=($!)
target/release/vigile serve --config "$work/a.yaml" &
pids+=($!)
# B starts once A has migrated the schema (they would also wait on each
# other's advisory lock).
for _ in $(seq 50); do curl -fs http://127.0.0.1:9090/readyz >/dev/null 2>&1 && break; sleep 0.2; done
target/release/vigile serve --config "$work/b.yaml" &
pids+=($!)

echo "vigile: replica A on http://localhost:8080, replica B on http://localhost:8081," \
  "one PostgreSQL on 127.0.0.1:$PG_PORT (Ctrl-C to stop)" >&2
wait -n "${pids[@]}"
