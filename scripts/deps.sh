#!/usr/bin/env bash
# deps.sh: install the Debian packages vitd needs, idempotently.
#   scripts/deps.sh build   -- compilers and -dev libraries (make, make run)
#   scripts/deps.sh test    -- build + what the test suite uses (python3-numpy for fixtures I/O; chromium,
#                              node and npm for the web page's browser test, whose npm packages,
#                              pinned in tests/browser/package-lock.json, `npm ci` installs there;
#                              PostgreSQL, haproxy and kubectl for the fleet and deploy tests;
#                              python3-jsonschema to check every integration test response against
#                              server/openapi.json, and its linter, pinned in tests/openapi)
#   scripts/deps.sh bench   -- test + PyTorch, wrk and the FastAPI peer (benchmarks, fixture generators)
#   scripts/deps.sh fuzz    -- build + clang and its libFuzzer runtime (make fuzz; not needed by make test)
# Installs only what is missing; runs apt-get update only when something is.
# Names that exist on both Debian (bookworm) and Ubuntu (22.04+): libjpeg-dev pulls libjpeg-turbo.
set -euo pipefail
what=${1:-build}
pkgs=(build-essential pkg-config libmicrohttpd-dev libcjson-dev libturbojpeg0-dev
      libjpeg-dev libpng-dev libopenblas-dev zlib1g-dev libpq-dev)
if [ "$what" = test ] || [ "$what" = bench ]; then
  pkgs+=(python3 python3-numpy python3-jsonschema curl chromium postgresql haproxy)
  # Debian's nodejs + npm, unless a node with npm is already installed (e.g. NodeSource's nodejs,
  # which conflicts with Debian's npm package)
  command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm)
  # kubectl renders deploy/k8s (kubectl kustomize): Debian's kubernetes-client unless a kubectl
  # from another package is there (both own /usr/bin/kubectl)
  command -v kubectl >/dev/null 2>&1 || pkgs+=(kubernetes-client)
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
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps.sh: installing ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then SUDO=sudo; else
      echo "deps.sh: need root to install: ${missing[*]}" >&2; exit 1; fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -q >&2
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >&2
fi
# the browser test's npm packages, exactly as locked, into tests/browser/node_modules (never
# global); puppeteer-core drives Debian's chromium, so no browser is downloaded
if [ "$what" = test ] || [ "$what" = bench ]; then
  b="$(dirname "$0")/../tests/browser"
  if [ ! -f "$b/node_modules/.package-lock.json" ] || [ "$b/package-lock.json" -nt "$b/node_modules/.package-lock.json" ]; then
    echo "deps.sh: npm ci in tests/browser" >&2
    (cd "$b" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
fi
# the OpenAPI linter (Redocly CLI), exactly as locked, into tests/openapi/node_modules
if [ "$what" = test ] || [ "$what" = bench ]; then
  o="$(dirname "$0")/../tests/openapi"
  if [ ! -f "$o/node_modules/.package-lock.json" ] || [ "$o/package-lock.json" -nt "$o/node_modules/.package-lock.json" ]; then
    echo "deps.sh: npm ci in tests/openapi" >&2
    (cd "$o" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
fi
