#!/usr/bin/env bash
# deploy/smoke.sh — bring the whole compose stack up on this machine, check it, tear it down.
#
# No container registry is reachable here, so: Debian's docker.io and docker-compose are installed
# if missing, dockerd is started if none runs, a Debian base image is made with debootstrap and
# `docker import`, the wheels every image needs are fetched by this machine's pip into
# deploy/wheels, and every image (ChromaDB's too, from the chromadb package) is built offline on
# that base. Then: the embedder scaled to 3 (CPU flavour, tiny model-config, --pretrained none),
# a generated dataset indexed with `run --rm indexer`, searches through the HTTP port, a check
# that each embedder replica served calls, and `down -v`. A dockerd it started is stopped again.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${SMOKE_WORK:-/tmp/fashionrag-smoke}
PY=${PYTHON:-$ROOT/.venv/bin/python}
mkdir -p "$WORK"
say() { printf '\n== [%4ss] %s\n' "$SECONDS" "$*"; }
fail() { printf 'smoke: FAILED: %s\n' "$*" >&2; exit 1; }

# Two distinct free ports, from the same helper the tests use (devstack).
read -r HTTP_PORT GRPC_PORT < <("$PY" -c 'from devstack.ports import free_port; print(free_port(), free_port())')
export COMPOSE_PROFILES=cpu BASE_IMAGE=fashionrag-base:bookworm OFFLINE_BUILD=1 \
  CHROMA_IMAGE=fashionrag-chroma:1.5.9 \
  EMBEDDER_MODEL=/opt/fashionrag/configs/tiny-clip.json EMBEDDER_PRETRAINED=none \
  QUERY_HTTP_PORT=$HTTP_PORT QUERY_GRPC_PORT=$GRPC_PORT COLLECTION=smoke
# Compose v1 (Debian's docker-compose) where present, else the v2 plugin; SMOKE_COMPOSE="docker
# compose" picks v2 where both are installed.
if [ -n "${SMOKE_COMPOSE:-}" ]; then read -r -a COMPOSE <<<"$SMOKE_COMPOSE"
elif command -v docker-compose >/dev/null; then COMPOSE=(docker-compose)
else COMPOSE=(docker compose); fi
compose() { "${COMPOSE[@]}" -p fashionrag-smoke -f deploy/docker-compose.yml "$@"; }

say "docker"
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null \
   || ! command -v docker-compose >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose debootstrap >/dev/null
  [ -n "${SMOKE_COMPOSE:-}" ] || COMPOSE=(docker-compose)
fi
DOCKERD_PID=""
if ! docker info >/dev/null 2>&1; then
  dockerd >"$WORK/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || fail "dockerd did not start; see $WORK/dockerd.log"
fi
cleanup() {
  status=$?
  say "teardown"
  compose down -v --remove-orphans >/dev/null 2>&1 || true
  # The images weigh ~10 GB with their build stages: leave nothing to pile up run after run
  # (SMOKE_KEEP_IMAGES=1 keeps them, and the build cache, for a faster next run).
  if [ "${SMOKE_KEEP_IMAGES:-0}" != 1 ]; then
    docker rmi -f "fashionrag-embedder:${FASHIONRAG_TAG:-latest}" \
      "fashionrag-app:${FASHIONRAG_TAG:-latest}" "$CHROMA_IMAGE" >/dev/null 2>&1 || true
    docker image prune -f >/dev/null 2>&1 || true
    docker builder prune -af >/dev/null 2>&1 || true
  fi
  if [ -n "$DOCKERD_PID" ]; then kill "$DOCKERD_PID" 2>/dev/null; wait "$DOCKERD_PID" 2>/dev/null || true; fi
  [ $status -eq 0 ] && say "smoke test passed in ${SECONDS}s"
  exit $status
}
trap cleanup EXIT

say "base image (debootstrap + docker import)"
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  rm -rf "$WORK/rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm \
    "$WORK/rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log"
  tar -C "$WORK/rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
  rm -rf "$WORK/rootfs"
fi

say "wheelhouse (deploy/wheels)"
"$PY" deploy/requirements.py embedder indexer query chroma-client >"$WORK/requirements.txt"
printf 'chromadb==1.5.9\ngrpcio-tools==1.85.1\nsetuptools>=69\n' >>"$WORK/requirements.txt"
"$PY" -m pip download --quiet --disable-pip-version-check -d deploy/wheels \
  -r "$WORK/requirements.txt" 2>&1 | grep -v '^WARNING: Location' || true

say "build images"
# ChromaDB's server from the chromadb package, standing in for chromadb/chroma:1.5.9.
docker build -q -f deploy/Dockerfile.chroma --build-arg BASE_IMAGE="$BASE_IMAGE" \
  --build-arg PIP_NO_INDEX=1 -t "$CHROMA_IMAGE" .
compose build

say "dataset (generated, Fashionpedia's schema)"
rm -rf "$WORK/dataset"
"$PY" -m devstack.sample_data "$WORK/dataset" --rows 60 --splits train >/dev/null 2>&1
chmod -R a+rX "$WORK/dataset"

say "up, embedder scaled to 3"
compose up -d --scale embedder-cpu=3
for _ in $(seq 120); do
  healthy=$(docker ps --filter "label=com.docker.compose.project=fashionrag-smoke" \
    --filter health=healthy --format '{{.Names}}' | wc -l)
  [ "$healthy" -ge 5 ] && break  # chroma, query, 3 embedders
  sleep 2
done
[ "$healthy" -ge 5 ] || { compose ps; compose logs --tail 30; fail "not all healthy"; }
compose ps

say "index (run --rm indexer)"
summary=$(compose run --rm -v "$WORK/dataset:/dataset:ro" -e FASHIONRAG_DATASET=/dataset \
  indexer --limit 0 --batch-size 4 --concurrency 2 | tail -n 1)
echo "$summary"
echo "$summary" | "$PY" -c 'import json,sys; s=json.load(sys.stdin); assert s["indexed"]==60 and s["failed"]==0, s'

say "search through the HTTP port"
base="http://127.0.0.1:$HTTP_PORT"
curl -fsS "$base/healthz"; echo
curl -fsS "$base/api/search?q=red+tops&k=5&auto_category=off" >"$WORK/search.json"
"$PY" - "$WORK/search.json" "$base" <<'PY'
import json, sys, urllib.request
payload = json.load(open(sys.argv[1]))
results = payload["results"]
assert len(results) == 5, payload
assert [r["distance"] for r in results] == sorted(r["distance"] for r in results)
image = urllib.request.urlopen(f"{sys.argv[2]}/images/{results[0]['id']}").read()
assert image[:2] == b"\xff\xd8" or image[:4] == b"\x89PNG", "not an image"
print(f"{len(results)} results, nearest {results[0]['id']} at {results[0]['distance']:.4f}")
PY

say "each embedder replica served calls"
for c in $(docker ps --filter "label=com.docker.compose.project=fashionrag-smoke" \
             --filter "label=com.docker.compose.service=embedder-cpu" --format '{{.Names}}'); do
  served=$(docker exec "$c" python -c '
import urllib.request
page = urllib.request.urlopen("http://127.0.0.1:9100/metrics").read().decode()
print(int(sum(float(l.rsplit(" ", 1)[1]) for l in page.splitlines()
              if l.startswith("fashionrag_embedder_requests_total{") and "Embed" in l)))')
  echo "$c: $served embed calls"
  [ "$served" -gt 0 ] || fail "$c served no calls"
done
