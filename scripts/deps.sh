#!/usr/bin/env bash
# deps.sh: install the Debian packages vitd needs, idempotently.
#   scripts/deps.sh build   -- compilers and -dev libraries (make, make run)
#   scripts/deps.sh test    -- build + what the test suite uses (python3-numpy for fixtures I/O,
#                              python3-jsonschema to check every integration test response against
#                              server/openapi.json, Node.js + `npm ci` in tests/openapi for its linter)
#   scripts/deps.sh bench   -- test + PyTorch, wrk and the FastAPI peer (benchmarks, fixture generators)
#   scripts/deps.sh fuzz    -- build + clang and its libFuzzer runtime (make fuzz; not needed by make test)
# Installs only what is missing; runs apt-get update only when something is.
# Names that exist on both Debian (bookworm) and Ubuntu (22.04+): libjpeg-dev pulls libjpeg-turbo.
set -euo pipefail
what=${1:-build}
pkgs=(build-essential pkg-config libmicrohttpd-dev libcjson-dev libturbojpeg0-dev
      libjpeg-dev libpng-dev libopenblas-dev zlib1g-dev)
if [ "$what" = test ] || [ "$what" = bench ]; then
  pkgs+=(python3 python3-numpy python3-jsonschema curl)
  # Node.js: Debian's, unless a node with npm is already there (another vendor's nodejs
  # package bundles npm and conflicts with Debian's npm)
  command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm)
fi
if [ "$what" = fuzz ]; then
  pkgs+=(clang libclang-rt-14-dev)
fi
if [ "$what" = bench ]; then
  pkgs+=(python3-torch python3-torchvision python3-pil python3-skimage dataset-fashion-mnist
         wrk python3-fastapi uvicorn python3-multipart hyperfine)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm packages of the test suite, pinned by their lockfiles, installed into the repository
npm_ci() { # dir: npm ci when node_modules is missing or older than the lockfile
  local d=$1 stamp=$1/node_modules/.vitd-lock
  [ -f "$stamp" ] && cmp -s "$d/package-lock.json" "$stamp" && return 0
  echo "deps.sh: npm ci in $d" >&2
  (cd "$d" && npm ci --no-audit --no-fund --ignore-scripts >&2) && cp "$d/package-lock.json" "$stamp"
}
npm_deps() {
  [ "$what" = test ] || [ "$what" = bench ] || return 0
  npm_ci "$(dirname "$0")/../tests/openapi"
}
if [ ${#missing[@]} -eq 0 ]; then npm_deps; exit 0; fi
echo "deps.sh: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "deps.sh: need root to install: ${missing[*]}" >&2; exit 1; fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >&2
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >&2
npm_deps
