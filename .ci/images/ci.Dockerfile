# clarity-ci:latest — built by .ci/images.sh (context: a generated requirements.txt and the
# host CA bundle; the repo itself is not copied in; tests run with the checkout at /workspace).
FROM clarity-python:bookworm
COPY requirements.txt /tmp/clarity-requirements.txt
COPY ca-certificates.crt /tmp/clarity-build-ca.crt
# PIP_CONFIG_FILE=/dev/null: ignore any pip config; only PyPI is used. The host CA bundle is
# used when non-empty (HTTPS may be intercepted on the build machine).
RUN set -eu; \
    cert=/etc/ssl/certs/ca-certificates.crt; \
    if [ -s /tmp/clarity-build-ca.crt ]; then cert=/tmp/clarity-build-ca.crt; fi; \
    python3 -m venv /opt/venv; \
    PIP_CONFIG_FILE=/dev/null PIP_CERT="$cert" PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_INDEX_URL=https://pypi.org/simple PIP_DEFAULT_TIMEOUT=120 \
      /opt/venv/bin/pip install -q -r /tmp/clarity-requirements.txt; \
    rm -f /tmp/clarity-requirements.txt /tmp/clarity-build-ca.crt; \
    find /opt/venv -name __pycache__ -prune -exec rm -rf {} +
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1
WORKDIR /workspace
CMD ["/bin/bash"]
