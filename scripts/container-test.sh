#!/usr/bin/env bash
# The container image built and run by a real Docker engine (.ci/run calls this):
#   1. an engine: the running one, or dockerd started here with no bridge and no iptables
#      rules, so every build and container uses the host's network (--network host) and
#      nothing it serves leaves the loopback;
#   2. the Dockerfile's base image: node:<NODE_VERSION>-slim cannot be pulled (no image
#      registry is reachable), so scripts/base-image.sh makes a stand-in from Debian's and
#      npm's packages, once per machine;
#   3. `docker build` of the Dockerfile as it is, naming that base (BASE_IMAGE);
#   4. test/container/container.test.ts against it: the machine's PostgreSQL (a fresh
#      database, dropped after) and a real SMTP peer on the host.
# Where no engine can be had (no dockerd, not root, dockerd failing to start), it says so
# and skips with exit 0; a build or a test that fails fails it.
#
# Environment: CONTAINER_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres),
# CONTAINER_TEST_LOG_DIR (dockerd's and the build's logs; default a new folder under /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."

log_dir=${CONTAINER_TEST_LOG_DIR:-$(mktemp -d /tmp/assent-container-test.XXXXXX)}
mkdir -p "$log_dir"
# A folder of our own making goes once the test has passed; after a failure or a skip its logs stay.
passed=
remove_logs() { [ -n "$passed" ] && [ -z "${CONTAINER_TEST_LOG_DIR:-}" ] && rm -rf "$log_dir"; return 0; }
started=$SECONDS
say() { echo "container test: $*"; }
skip() { say "SKIPPED: $*"; exit 0; }

dockerd_pid=
stop_dockerd() {
  [ -n "$dockerd_pid" ] || return 0
  kill -TERM "$dockerd_pid" 2>/dev/null || return 0
  for _ in $(seq 60); do kill -0 "$dockerd_pid" 2>/dev/null || return 0; sleep 0.5; done
  kill -KILL "$dockerd_pid" 2>/dev/null || true
}
trap 'stop_dockerd; remove_logs' EXIT

engine_ready() { timeout 10 docker info >/dev/null 2>&1; }

if ! command -v docker >/dev/null; then skip "no docker client (Debian: apt-get install docker.io)"; fi
if engine_ready; then
  say "using the Docker engine already running"
else
  command -v dockerd >/dev/null || skip "no dockerd to start (Debian: apt-get install docker.io)"
  [ "$(id -u)" = 0 ] || skip "dockerd needs root, and this runs as $(id -un)"
  # No bridge, no NAT rules: containers get the host's network namespace only.
  dockerd --bridge=none --iptables=false >"$log_dir/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 60); do
    engine_ready && break
    kill -0 "$dockerd_pid" 2>/dev/null || break
    sleep 0.5
  done
  if ! engine_ready; then
    tail -15 "$log_dir/dockerd.log" | sed 's/^/  dockerd: /'
    stop_dockerd
    dockerd_pid=
    skip "dockerd could not start: it exited, or did not answer within 30 s (its log: $log_dir/dockerd.log)"
  fi
  say "started dockerd (pid $dockerd_pid, log $log_dir/dockerd.log)"
fi

node_major=$(sed -n 's/^ARG NODE_VERSION=\([0-9]*\).*/\1/p' Dockerfile)
base_tag="assent-local/node:${node_major}-slim"
if ! docker image inspect "$base_tag" >/dev/null 2>&1 && ! command -v debootstrap >/dev/null; then
  skip "no base image $base_tag and no debootstrap to make one (Debian: apt-get install debootstrap)"
fi
phase=$SECONDS
scripts/base-image.sh "$base_tag" "$node_major"
say "base image ready in $((SECONDS - phase)) s"

# The legacy builder: BuildKit would fetch the `# syntax=` frontend image from a registry,
# and the Debian client has no buildx. It reads the same Dockerfile.
image=assent:container-test
phase=$SECONDS
if ! DOCKER_BUILDKIT=0 timeout 1200 docker build --force-rm --network host --build-arg "BASE_IMAGE=$base_tag" -t "$image" . >"$log_dir/build.log" 2>&1; then
  tail -40 "$log_dir/build.log"
  say "docker build failed (log: $log_dir/build.log)"
  exit 1
fi
say "docker build in $((SECONDS - phase)) s"
# Layers of earlier builds that no tag uses any more.
docker image prune --force >/dev/null 2>&1 || true

phase=$SECONDS
ASSENT_IMAGE=$image DATABASE_URL=${CONTAINER_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres} \
  timeout 900 npx vitest run --config vitest.container.config.ts
passed=1
say "containers tested in $((SECONDS - phase)) s; $((SECONDS - started)) s in all"
