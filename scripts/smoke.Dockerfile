# Smoke test of a built image of the service, run by scripts/docker-test.sh with scripts/ as the context
# (`podman run` is not available there, so the server is started inside a RUN step; a failed check fails the build):
#
#   podman build -f scripts/smoke.Dockerfile --build-arg IMAGE=skipgram:latest \
#       --output type=local,dest=DIR scripts/        # model given at run time; leaves the tiny model in DIR
#   podman build -f scripts/smoke.Dockerfile --build-arg IMAGE=skipgram:NAME --build-arg BAKED=1 \
#       --target smoke scripts/                      # the model baked into the image
#   podman build -f scripts/smoke.Dockerfile --build-arg IMAGE=skipgram:latest \
#       --target prometheus scripts/                 # a real Prometheus scrapes it (prometheus_smoke.py)
#
# HEALTHCHECK_TEST: the image's HEALTHCHECK command as JSON (podman image inspect), run against the server too.

ARG IMAGE=skipgram:latest
FROM ${IMAGE} AS smoke
ARG BAKED=
ARG HEALTHCHECK_TEST=
COPY docker_smoke.py /tmp/docker_smoke.py
RUN python /tmp/docker_smoke.py ${BAKED:+--baked} --model-dir /tmp/smoke-model

# Debian's prometheus package, pinned, in this stage only (never in the image), scraping the image's command.
# policy-rc.d: the package's scripts must not start a prometheus of their own.
FROM ${IMAGE} AS prometheus
ARG PROMETHEUS_VERSION=2.42.0+ds-5+deb12u1
USER root
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        prometheus="$PROMETHEUS_VERSION" >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb
USER app
COPY docker_smoke.py prometheus_smoke.py /tmp/
RUN python /tmp/prometheus_smoke.py

# The tiny model the first run wrote, for --output: docker-test.sh bakes it into an image next.
FROM scratch AS model
COPY --from=smoke /tmp/smoke-model /
