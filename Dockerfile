# The embedding service as an image: gunicorn + Flask + FAISS on Debian's python3, without numba.
#
#   podman build --format docker -t skipgram .                                    # mount a model at run time
#   podman build --format docker --build-arg MODEL=models/NAME -t skipgram:NAME . # bake models/NAME in
#   bash scripts/docker-test.sh                                # build + smoke test (scripts/smoke.Dockerfile)
#
# (--format docker keeps the HEALTHCHECK, which the OCI image format has no field for; docker build needs no flag.)
# Stages: base (Debian python3, the app user) -> build (venv: pinned dependencies + this project, no extras)
#         -> runtime (base + that venv, run as the app user): the image.

FROM debian:bookworm-slim AS base
# The published bookworm-slim leaves out documentation, manuals and translations and drops apt's caches;
# the locally made base image does neither, so do it here (a no-op on the published one): 50 MB less.
RUN printf 'path-exclude /usr/share/%s/*\n' doc man info locale lintian > /etc/dpkg/dpkg.cfg.d/slim \
 && echo 'path-include /usr/share/doc/*/copyright' >> /etc/dpkg/dpkg.cfg.d/slim \
 && find /usr/share/doc -depth ! -type d ! -name copyright -delete \
 && find /usr/share/doc -depth -type d -empty -delete \
 && rm -rf /usr/share/man/* /usr/share/info/* /usr/share/locale/* /usr/share/lintian/* \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
 && useradd --system --user-group --uid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin app


FROM base AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PATH=/opt/venv/bin:$PATH
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
 && python3 -m venv /opt/venv \
 && pip install --quiet pip==25.3
WORKDIR /src
# Dependencies first, as pyproject.toml lists them (no extras), so that a change of code reuses this layer.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > /tmp/requirements.txt \
 && pip install --quiet --only-binary=:all: -c constraints.txt -r /tmp/requirements.txt
COPY README.md ./
COPY trainer/ trainer/
COPY service/ service/
# The project itself (a regular install, no extras), then the installers, which the runtime has no use for.
# /app/service points at the installed package, so that the command's service/gunicorn.conf.py is found
# relative to the working directory /app, as in a checkout.
RUN pip install --quiet --no-deps -c constraints.txt . \
 && python -c "import importlib.util as u, sys; sys.exit(u.find_spec('numba') is not None)" \
 && pip uninstall --quiet -y pip setuptools \
 && mkdir /app \
 && ln -s "$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/service" /app/service


# The base stage's files as one layer of its own: a root file system packed from a mktemp -d folder (as the
# locally made debian:bookworm-slim is) has / at mode 0700, which locks out every user but root, and no layer
# on top of it can change that; a layer without a parent gets a traversable /. Same files, same size.
FROM scratch AS runtime
COPY --from=base / /
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
# A model folder to bake in, e.g. --build-arg MODEL=models/default: copied to /models/default, checked, served.
# Without it the image holds no model: mount one (-v ./models:/models) and name it with -e MODEL_DIR=/models/NAME.
# The app user owns the copy: model folders are written with 0700 permissions.
ARG MODEL=
COPY --chown=app:app ${MODEL:-models/.gitkeep} /${MODEL:-models/.gitkeep}
RUN if [ -n "$MODEL" ]; then /opt/venv/bin/python -m trainer verify "/$MODEL"; fi
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MODEL_DIR=/${MODEL:-models/default} \
    PORT=8000
WORKDIR /app
USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]
CMD ["gunicorn", "-c", "service/gunicorn.conf.py", "service:create_app()"]

