#!/usr/bin/env bash
# Builds the service image and smoke-tests it (make docker-test; CI). Needs podman, which the base-image
# script installs. Steps:
#   1. the local debian:bookworm-slim base image (../shared/container/base-image.sh: no registry is reachable)
#   2. the image itself (Dockerfile target runtime), and a look at its configuration
#   3. smoke test with a model given at run time: a RUN step of the smoke stage writes a tiny model, starts the
#      image's command on it (MODEL_DIR), queries /healthz, /readyz and /similar, and stops it
#   4. smoke test with a model baked in: that tiny model is exported into models/, built in with
#      --build-arg MODEL=models/..., and served the same way
# Prints PASS/FAIL lines; exits non-zero on the first failed step.
#   IMAGE=skipgram:dev bash scripts/docker-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-skipgram:latest}
BASE_IMAGE_SCRIPT=${BASE_IMAGE_SCRIPT:-../shared/container/base-image.sh}
BUILD=(podman build --isolation chroot --format docker)
RUN_ID=$(date +%s)-$$
BAKED=models/docker-smoke-$RUN_ID
LOGS=$(mktemp -d /tmp/docker-test.XXXXXX)
trap 'rm -rf "$BAKED" "$LOGS"' EXIT
started=$SECONDS

# step NAME COMMAND...: runs the command with its output in a log, prints PASS/FAIL and the time taken;
# on failure shows the log's end and stops the script.
step() {
  local name=$1 t0=$SECONDS log
  shift
  log=$LOGS/$(tr -c 'a-zA-Z0-9' '_' <<<"$name").log
  echo "---- $name"
  if "$@" >"$log" 2>&1; then
    grep -E '^(PASS|FAIL)' "$log" || true
    echo "PASS: $name ($((SECONDS - t0)) s)"
  else
    tail -n 60 "$log"
    echo "FAIL: $name ($((SECONDS - t0)) s); full log above, last 60 lines"
    echo "docker-test: FAILED"
    exit 1
  fi
}

inspect_image() {
  local user ports health cmd
  user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
  ports=$(podman image inspect --format '{{json .Config.ExposedPorts}}' "$IMAGE")
  health=$(podman image inspect --format '{{json .Config.Healthcheck.Test}}' "$IMAGE")
  cmd=$(podman image inspect --format '{{json .Config.Cmd}}' "$IMAGE")
  local ok=0
  [ "$user" = app ] && echo "PASS: image user is app" || { echo "FAIL: image user is '$user'"; ok=1; }
  [[ $ports == *'"8000/tcp"'* ]] && echo "PASS: exposes 8000/tcp" || { echo "FAIL: exposed ports $ports"; ok=1; }
  [[ $health == *healthz* ]] && echo "PASS: HEALTHCHECK on /healthz" || { echo "FAIL: healthcheck $health"; ok=1; }
  [ "$cmd" = '["gunicorn","-c","service/gunicorn.conf.py","service:create_app()"]' ] \
    && echo "PASS: command is gunicorn" || { echo "FAIL: command $cmd"; ok=1; }
  return $ok
}

step "base image" bash "$BASE_IMAGE_SCRIPT"
step "build image $IMAGE" "${BUILD[@]}" --target runtime -t "$IMAGE" .
step "image configuration" inspect_image
HEALTHCHECK_TEST=$(podman image inspect --format '{{json .Config.Healthcheck.Test}}' "$IMAGE")
step "smoke test, model given at run time" "${BUILD[@]}" --target smoke \
  --build-arg SMOKE_RUN="$RUN_ID" --build-arg HEALTHCHECK_TEST="$HEALTHCHECK_TEST" .
step "tiny model exported to $BAKED" "${BUILD[@]}" --target smoke-model-files --output "type=local,dest=$BAKED" .
step "smoke test, model baked in (--build-arg MODEL=$BAKED)" "${BUILD[@]}" --target smoke \
  --build-arg MODEL="$BAKED" --build-arg SMOKE_RUN="$RUN_ID" --build-arg HEALTHCHECK_TEST="$HEALTHCHECK_TEST" .

size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "image $IMAGE: $((size / 1000000)) MB"
echo "docker-test: all steps passed ($((SECONDS - started)) s)"
