# Smoke test of a built image of the service, run by scripts/docker-test.sh with scripts/ as the context
# (`podman run` is not available there, so the server is started inside a RUN step; a failed check fails the build):
#
#   podman build -f scripts/smoke.Dockerfile --build-arg IMAGE=skipgram:latest \
#       --output type=local,dest=DIR scripts/        # model given at run time; leaves the tiny model in DIR
#   podman build -f scripts/smoke.Dockerfile --build-arg IMAGE=skipgram:NAME --build-arg BAKED=1 \
#       --target smoke scripts/                      # the model baked into the image
#
# HEALTHCHECK_TEST: the image's HEALTHCHECK command as JSON (podman image inspect), run against the server too.

ARG IMAGE=skipgram:latest
FROM ${IMAGE} AS smoke
ARG BAKED=
ARG HEALTHCHECK_TEST=
COPY docker_smoke.py /tmp/docker_smoke.py
RUN python /tmp/docker_smoke.py ${BAKED:+--baked} --model-dir /tmp/smoke-model

# The tiny model the first run wrote, for --output: docker-test.sh bakes it into an image next.
FROM scratch AS model
COPY --from=smoke /tmp/smoke-model /
