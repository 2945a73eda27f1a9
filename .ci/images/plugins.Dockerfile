# clarity-plugins:latest — built by .ci/images.sh: the image the built-in plugins' tasks run in
# (validation, transformation, storage, notification): Python 3 with the libraries their code
# uses. The plugins' code itself is not in the image: Clarity copies it into each task.
FROM clarity-python:bookworm
COPY requirements.txt /tmp/clarity-requirements.txt
COPY ca-certificates.crt /tmp/clarity-build-ca.crt
RUN set -eu; \
    cert=/etc/ssl/certs/ca-certificates.crt; \
    if [ -s /tmp/clarity-build-ca.crt ]; then cert=/tmp/clarity-build-ca.crt; fi; \
    python3 -m venv /opt/plugins; \
    PIP_CONFIG_FILE=/dev/null PIP_CERT="$cert" PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_INDEX_URL=https://pypi.org/simple PIP_DEFAULT_TIMEOUT=120 \
      /opt/plugins/bin/pip install -q -r /tmp/clarity-requirements.txt; \
    rm -f /tmp/clarity-requirements.txt /tmp/clarity-build-ca.crt; \
    find /opt/plugins -name __pycache__ -prune -exec rm -rf {} +
ENV VIRTUAL_ENV=/opt/plugins \
    PATH=/opt/plugins/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1
WORKDIR /workspace
CMD ["/bin/bash"]
