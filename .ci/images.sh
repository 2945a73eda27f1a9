#!/usr/bin/env bash
# Build Clarity's local container images without any registry:
#   clarity-busybox:latest            root fs from Debian's busybox-static
#   clarity-python:bookworm (+latest) debootstrap minbase with python3, venv, pip, git
#   clarity-ci:latest                 clarity-python + /opt/venv with the project's test deps
#   clarity-plugins:latest            clarity-python + /opt/plugins: what the built-in plugins' tasks use
# Skips images that already exist (with label io.clarity.image=1); --force rebuilds all.
# The debootstrap root fs is cached in .ci/cache/ (also used by --force); delete that
# directory to re-run debootstrap.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { echo "images: $*" >&2; }

force=0
for a in "$@"; do
  case "$a" in
    --force) force=1 ;;
    *) echo "usage: $0 [--force]" >&2; exit 2 ;;
  esac
done

LABEL=io.clarity.image
CACHE=.ci/cache
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"   # one build at a time when several setups run at once
flock 9
tmp=$(mktemp -d "${TMPDIR:-/tmp}/clarity-images.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

have() {  # image exists and was built by this script
  [[ "$(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null || true)" == 1 ]]
}
label_of() { docker image inspect -f "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null || true; }

# --- clarity-busybox:latest ------------------------------------------------------------
if ((force)) || ! have clarity-busybox:latest; then
  log "building clarity-busybox:latest"
  bb=$(dpkg -L busybox-static | grep -E '/bin/busybox$' | head -n1)
  [[ -x "$bb" ]] || { log "busybox-static is not installed"; exit 1; }
  root=$tmp/busybox
  mkdir -p "$root"/{bin,etc,tmp,workspace,root}
  chmod 1777 "$root/tmp"
  cp "$bb" "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    [[ "$applet" == busybox ]] || ln -sf busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  tar -C "$root" --numeric-owner --owner=0 --group=0 -c . |
    docker import \
      --change 'CMD ["/bin/sh"]' \
      --change 'ENV PATH=/bin' \
      --change "LABEL $LABEL=1" \
      - clarity-busybox:latest >/dev/null
fi

# --- clarity-python:bookworm -----------------------------------------------------------
debian_mirror() {  # the host's Debian mirror (the entry serving bookworm), else deb.debian.org
  python3 - <<'PY' 2>/dev/null || echo http://deb.debian.org/debian
import glob, re
found = []
try:
    for line in open("/etc/apt/sources.list"):
        words = re.sub(r"\[[^]]*\]", " ", line.split("#")[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            found.append((words[1], words[2:3]))
except OSError:
    pass
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in re.split(r"\n\s*\n", open(path).read()):
        fields = dict(re.findall(r"^([A-Za-z-]+):[ \t]*(.*)$", stanza, re.M))
        if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
            for uri in fields.get("URIs", "").split():
                found.append((uri, fields.get("Suites", "").split()))
for uri, suites in found:
    if uri.startswith(("http://", "https://")) and "security" not in uri \
            and any(s in ("bookworm", "stable") for s in suites):
        print(uri.rstrip("/"))
        break
else:
    print("http://deb.debian.org/debian")
PY
}

python_built=0
INCLUDE=python3,python3-venv,python3-pip,git,ca-certificates
TRIM=2   # bump when the rootfs clean-up below changes, to invalidate the cached tarball
rootfs_tar=$CACHE/python-bookworm-rootfs.tar
rootfs_key=$CACHE/python-bookworm-rootfs.key   # what the cached tarball was made with
if ((force)) || ! have clarity-python:bookworm; then
  if [[ ! -s "$rootfs_tar" ]] || [[ "$(cat "$rootfs_key" 2>/dev/null || true)" != "$INCLUDE trim=$TRIM" ]]; then
    mirror=$(debian_mirror)
    log "debootstrap bookworm from $mirror (about a minute)"
    root=$tmp/python
    debootstrap --variant=minbase --include="$INCLUDE" bookworm "$root" "$mirror" \
      >"$tmp/debootstrap.log" 2>&1 || { tail -n 30 "$tmp/debootstrap.log" >&2; exit 1; }
    # keep it small: no apt caches or lists, no man/info pages, translations or docs
    # (the copyright files stay)
    rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
           "$root"/var/cache/apt/archives/partial/* "$root"/var/lib/apt/lists/* \
           "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
           "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/root/.cache
    find "$root/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    mkdir -p "$root/workspace"
    tar -C "$root" --numeric-owner -cf "$rootfs_tar.tmp" .
    mv -f "$rootfs_tar.tmp" "$rootfs_tar"
    echo "$INCLUDE trim=$TRIM" >"$rootfs_key"
    rm -rf "$root"
  else
    log "importing clarity-python:bookworm from cached $rootfs_tar"
  fi
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --change "LABEL $LABEL=1" \
    "$rootfs_tar" clarity-python:bookworm >/dev/null
  docker tag clarity-python:bookworm clarity-python:latest
  python_built=1
elif ! have clarity-python:latest; then
  docker tag clarity-python:bookworm clarity-python:latest
fi

# --- clarity-ci:latest -----------------------------------------------------------------
ctx=$tmp/ci
mkdir -p "$ctx"
python3 - pyproject.toml >"$ctx/requirements.txt" <<'PY'
import re, sys, tomllib
with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
with open(sys.argv[1], "rb") as f:
    build = tomllib.load(f).get("build-system", {}).get("requires", [])
# runtime deps, plus the build backend (CI builds the wheel with --no-build-isolation)
reqs = list(project.get("dependencies", [])) + list(build) + ["wheel"]
test = project.get("optional-dependencies", {}).get("test", [])
def name(req):
    return re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower().replace("_", "-")
for want in ("pytest", "pytest-timeout", "import-linter", "jmespath", "boto3", "moto", "aiosmtpd"):
    reqs.append(next((r for r in test if name(r) == want), want))
print("\n".join(reqs))
PY
req_sha=$(sha256sum "$ctx/requirements.txt" | cut -c1-16)
if ((force || python_built)) || ! have clarity-ci:latest ||
   [[ "$(label_of clarity-ci:latest io.clarity.requirements)" != "$req_sha" ]]; then
  log "building clarity-ci:latest (pip install from PyPI: $(paste -sd' ' "$ctx/requirements.txt"))"
  cp .ci/images/ci.Dockerfile "$ctx/Dockerfile"
  ca=/etc/ssl/certs/ca-certificates.crt
  if [[ -s "$ca" ]]; then cp "$ca" "$ctx/ca-certificates.crt"; else : >"$ctx/ca-certificates.crt"; fi
  docker build --network host -q \
    --label "$LABEL=1" --label "io.clarity.requirements=$req_sha" \
    -t clarity-ci:latest "$ctx" >"$tmp/build.log" 2>&1 || { tail -n 40 "$tmp/build.log" >&2; exit 1; }
fi

# --- clarity-plugins:latest ------------------------------------------------------------
pctx=$tmp/plugins
mkdir -p "$pctx"
grep -v '^#' .ci/images/plugins-requirements.txt >"$pctx/requirements.txt"
preq_sha=$(sha256sum "$pctx/requirements.txt" | cut -c1-16)
if ((force || python_built)) || ! have clarity-plugins:latest ||
   [[ "$(label_of clarity-plugins:latest io.clarity.requirements)" != "$preq_sha" ]]; then
  log "building clarity-plugins:latest (pip install from PyPI: $(paste -sd' ' "$pctx/requirements.txt"))"
  cp .ci/images/plugins.Dockerfile "$pctx/Dockerfile"
  ca=/etc/ssl/certs/ca-certificates.crt
  if [[ -s "$ca" ]]; then cp "$ca" "$pctx/ca-certificates.crt"; else : >"$pctx/ca-certificates.crt"; fi
  docker build --network host -q \
    --label "$LABEL=1" --label "io.clarity.requirements=$preq_sha" \
    -t clarity-plugins:latest "$pctx" >"$tmp/build-plugins.log" 2>&1 || { tail -n 40 "$tmp/build-plugins.log" >&2; exit 1; }
fi

# drop our own superseded images (untagged by a rebuild), unless a container uses them
docker image prune -f --filter "label=$LABEL=1" >/dev/null 2>&1 || true
log "ok: $(docker image ls --filter "label=$LABEL=1" --filter dangling=false --format '{{.Repository}}:{{.Tag}} {{.Size}}' | paste -sd, | sed 's/,/, /g')"
