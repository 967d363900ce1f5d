#!/usr/bin/env bash
# Builds the service image and smoke-tests it (make docker-test; CI). Needs podman, which the base-image
# script installs. Steps:
#   1. the local debian:bookworm-slim base image (../shared/container/base-image.sh: no registry is reachable)
#   2. the image, $IMAGE (Dockerfile), and a look at its configuration (user, port, healthcheck, command)
#   3. smoke test, model given at run time: scripts/smoke.Dockerfile starts from that image; a RUN step
#      writes a tiny model, starts the image's command on it (MODEL_DIR), queries /healthz, /readyz and
#      /similar, runs the image's HEALTHCHECK, stops the server; the tiny model is kept in models/
#   4. Prometheus: scripts/smoke.Dockerfile's stage prometheus installs Debian's prometheus package (pinned,
#      that stage only) and runs scripts/prometheus_smoke.py: the image's command on a tiny model with 2
#      workers, prometheus scraping its /metrics every second, known traffic; Prometheus's HTTP API must
#      then give sum by (endpoint, status) (skipgram_requests_total) equal to the requests sent
#   5. smoke test, model baked in: the image built again with --build-arg MODEL=models/<that model>,
#      checked the same way, then removed
# Prints PASS/FAIL lines; exits non-zero at the first failed step.
#   IMAGE=skipgram:dev bash scripts/docker-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-skipgram:latest}
BASE_IMAGE_SCRIPT=${BASE_IMAGE_SCRIPT:-../shared/container/base-image.sh}
# --layers=false: with the vfs storage driver every cached step is a full copy of the file system, which
# makes a layered build about four times slower than building afresh.
BUILD=(podman build --isolation chroot --format docker --layers=false)
BAKED_MODEL=models/docker-smoke-$$
BAKED_IMAGE=skipgram:docker-smoke-$$
LOGS=$(mktemp -d /tmp/docker-test.XXXXXX)
cleanup() {
  rm -rf "$BAKED_MODEL" "$LOGS"
  podman rmi -f "$BAKED_IMAGE" >/dev/null 2>&1 || true
}
trap cleanup EXIT
started=$SECONDS

# step NAME COMMAND...: runs the command with its output in a log, prints its PASS/FAIL lines and the
# time taken; on failure prints the end of the log and stops.
step() {
  local name=$1 t0=$SECONDS log
  shift
  log=$LOGS/$(tr -c 'a-zA-Z0-9\n' '_' <<<"$name").log
  echo "---- $name"
  if "$@" >"$log" 2>&1; then
    grep -E '^(PASS|FAIL|ok): ' "$log" || true
    echo "PASS: $name ($((SECONDS - t0)) s)"
  else
    echo "     ... the log's last 60 lines:"
    tail -n 60 "$log" | sed 's/^/     | /'
    grep -E '^(PASS|FAIL|ok): ' "$log" || true
    echo "FAIL: $name ($((SECONDS - t0)) s)"
    echo "docker-test: FAILED"
    exit 1
  fi
}

config() { podman image inspect --format "{{json .Config.$1}}" "$IMAGE"; }

expect() {  # expect WHAT ACTUAL EXPECTED: ACTUAL is EXPECTED, or contains it when it is written *...*
  local ok
  if [[ $3 == \** ]]; then [[ $2 == *"${3:1:-1}"* ]] && ok=1; else [[ $2 == "$3" ]] && ok=1; fi
  if [ -n "${ok:-}" ]; then echo "PASS: $1"; else echo "FAIL: $1: got $2"; return 1; fi
}

inspect_image() {
  local ok=0
  expect "runs as user app" "$(config User)" '"app"' || ok=1
  expect "exposes 8000/tcp" "$(config ExposedPorts)" '*"8000/tcp"*' || ok=1
  expect "HEALTHCHECK on /healthz" "$(config Healthcheck.Test)" '*/healthz*' || ok=1
  expect "command is gunicorn -c service/gunicorn.conf.py 'service:create_app()'" "$(config Cmd)" \
    '["gunicorn","-c","service/gunicorn.conf.py","service:create_app()"]' || ok=1
  return $ok
}

smoke() {  # smoke IMAGE [more build arguments]; the image a smoke build makes is of no further use
  local image=$1 iid=$LOGS/smoke.iid status=0
  shift
  "${BUILD[@]}" -f scripts/smoke.Dockerfile --iidfile "$iid" --build-arg IMAGE="$image" \
    --build-arg HEALTHCHECK_TEST="$(config Healthcheck.Test)" "$@" scripts/ || status=$?
  if [ -s "$iid" ]; then podman rmi "$(cat "$iid")" >/dev/null 2>&1 || true; rm -f "$iid"; fi
  return $status
}

step "base image" bash "$BASE_IMAGE_SCRIPT"
previous=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
step "build image $IMAGE" "${BUILD[@]}" -t "$IMAGE" .
# the image this build replaced under the same name would stay behind, nameless (vfs: a full copy)
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$IMAGE")" ]; then
  podman rmi "$previous" >/dev/null 2>&1 || true
fi
step "image configuration" inspect_image
step "smoke test, model given at run time" smoke "$IMAGE" --output "type=local,dest=$BAKED_MODEL"
step "Prometheus scrapes the service" smoke "$IMAGE" --target prometheus
step "build with the model baked in (--build-arg MODEL=$BAKED_MODEL)" \
  "${BUILD[@]}" --build-arg MODEL="$BAKED_MODEL" -t "$BAKED_IMAGE" .
step "smoke test, model baked in" smoke "$BAKED_IMAGE" --build-arg BAKED=1 --target smoke

size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "image $IMAGE: $((size / 1000000)) MB"
echo "docker-test: all steps passed ($((SECONDS - started)) s)"
