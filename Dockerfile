# Clarity: one image for `clarity controller` (the default) and `clarity runner`.
#
#   docker build --network host -t clarity:dev .
#   docker run -d -p 8080:8080 -v clarity-home:/var/lib/clarity clarity:dev
#   docker run -d -v /var/run/docker.sock:/var/run/docker.sock ... clarity:dev runner --controller URL ...
#
# BASE is any Debian-like image with Python >= 3.11 (venv, pip), git and ca-certificates. The
# default is the local image built by .ci/images.sh (no registry needed); python:3.11-slim-bookworm
# plus git works as well.
#
# pip reads only PyPI (PIP_INDEX_URL; any pip config of the build machine is ignored). Behind an
# HTTPS-intercepting proxy, put the CA bundle to trust at .ci/cache/build-ca.crt first
# (cp /etc/ssl/certs/ca-certificates.crt .ci/cache/build-ca.crt); it is used for the build only,
# and is not in the final image. Without it, the base image's CA bundle is used.
# See docs/deploy.md.
ARG BASE=clarity-python:bookworm

# --- build: a venv at /opt/clarity with the project and its dependencies ------------------------
FROM ${BASE} AS build
ARG PIP_INDEX_URL=https://pypi.org/simple
ENV PIP_CONFIG_FILE=/dev/null PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=120 PIP_INDEX_URL=${PIP_INDEX_URL}
# The dependencies first, from pyproject.toml alone: a source change does not re-download them.
# (The glob copies the optional CA bundle; pyproject.toml makes the COPY valid without it.)
COPY pyproject.toml .ci/cache/build-ca.cr[t] /tmp/build/
RUN set -eu; \
    cert=/etc/ssl/certs/ca-certificates.crt; \
    if [ -s /tmp/build/build-ca.crt ]; then cert=/tmp/build/build-ca.crt; fi; \
    python3 -c 'import sys; assert sys.version_info >= (3, 11), "Clarity needs Python >= 3.11"'; \
    python3 -m venv /opt/clarity; \
    python3 -c 'import sys, tomllib; d = tomllib.load(open(sys.argv[1], "rb")); \
print("\n".join(d["project"]["dependencies"] + d["build-system"]["requires"] + ["wheel"]))' \
        /tmp/build/pyproject.toml >/tmp/build/requirements.txt; \
    PIP_CERT="$cert" /opt/clarity/bin/pip install -q -r /tmp/build/requirements.txt
COPY . /src
RUN set -eu; \
    /opt/clarity/bin/pip install -q --no-deps --no-build-isolation /src; \
    /opt/clarity/bin/clarity --version; \
    find /opt/clarity -name __pycache__ -prune -exec rm -rf {} +

# --- the image ---------------------------------------------------------------------------------
FROM ${BASE}
LABEL org.opencontainers.image.title="Clarity" \
      org.opencontainers.image.description="Git-native CI: controller and runner agent" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN set -eu; \
    groupadd --system --gid 10001 clarity; \
    useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/clarity --no-create-home \
            --shell /usr/sbin/nologin clarity; \
    mkdir -p /var/lib/clarity; \
    chown clarity:clarity /var/lib/clarity; \
    chmod 0750 /var/lib/clarity
COPY --from=build /opt/clarity /opt/clarity
ENV PATH=/opt/clarity/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    VIRTUAL_ENV=/opt/clarity \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CLARITY_HOME=/var/lib/clarity
USER 10001:10001
WORKDIR /var/lib/clarity
VOLUME ["/var/lib/clarity"]
EXPOSE 8080
# Healthy when /healthz answers on the port the controller listens on (--port, else CLARITY_PORT,
# else 8080). Any other command (a runner) serves no HTTP: healthy while it runs.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request as u\nargv = open('/proc/1/cmdline', 'rb').read().decode().split('\\0')\nif 'controller' in argv or 'up' in argv:\n    port = os.environ.get('CLARITY_PORT') or '8080'\n    if '--port' in argv:\n        port = argv[argv.index('--port') + 1]\n    port = next((a.split('=', 1)[1] for a in argv if a.startswith('--port=')), port)\n    u.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).read()\n"]
ENTRYPOINT ["clarity"]
CMD ["controller", "--host", "0.0.0.0"]
