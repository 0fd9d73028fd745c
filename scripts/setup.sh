#!/usr/bin/env bash
# Installs everything Vigil needs on a Debian machine, idempotently:
# the Debian packages (software TPM, TPM tools and headers), a Python venv in .venv
# with Vigil and its development dependencies, and a pinned OPA in .tools/bin (built from
# its Go module; the policy tests run it). Safe to run again; does nothing twice.
set -euo pipefail
cd "$(dirname "$0")/.."

# qemu-system-x86: the guests of the rollout's QEMU live-migration backend (and its tests);
# chromium: the browser the dashboard tests drive through Playwright
DEBIAN_PACKAGES=(swtpm swtpm-tools tpm2-tools libtss2-dev pkg-config qemu-system-x86 chromium)

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)" >&2
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.vigil-installed
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing Vigil and its dependencies into .venv" >&2
  log=.venv/pip-install.log
  if ! { .venv/bin/python -m pip install -q --upgrade pip &&
         .venv/bin/python -m pip install -q -e '.[dev]'; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup: pip install failed (log above, also in $log)" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi

OPA_VERSION=1.22.4
opa=.tools/bin/opa
installed=$([ -x "$opa" ] && "$opa" version 2>/dev/null | head -1 || true)
if [ "$installed" != "Version: $OPA_VERSION" ]; then
  command -v go >/dev/null 2>&1 || { echo "setup: building OPA needs Go (https://go.dev/dl/)" >&2; exit 1; }
  echo "setup: building OPA $OPA_VERSION into .tools/bin" >&2
  log=.tools/opa-install.log
  mkdir -p .tools/bin
  if ! GOBIN="$PWD/.tools/bin" go install "github.com/open-policy-agent/opa@v$OPA_VERSION" >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup: building OPA failed (log above, also in $log)" >&2
    exit 1
  fi
fi

# OPA's Rego engine as a C shared library for the in-process `opa` evaluator
# (engine/decide/evaluators/oparego, the same OPA release as the binary above).
bridge=engine/decide/evaluators/oparego
lib=.tools/lib/libvigilopa.so
want_lib="$OPA_VERSION $(cat "$bridge"/*.go "$bridge/go.mod" "$bridge/go.sum" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$lib" ] || [ "$(cat .tools/lib/.stamp 2>/dev/null)" != "$want_lib" ]; then
  grep -q "github.com/open-policy-agent/opa v$OPA_VERSION" "$bridge/go.mod" || {
    echo "setup: $bridge/go.mod does not pin OPA v$OPA_VERSION" >&2; exit 1; }
  echo "setup: building OPA's Rego engine into $lib" >&2
  mkdir -p .tools/lib
  log=.tools/oparego-build.log
  if ! (cd "$bridge" && go build -buildmode=c-shared -o "$OLDPWD/$lib.tmp" .) >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup: building OPA's Rego engine failed (log above, also in $log)" >&2
    exit 1
  fi
  rm -f .tools/lib/*.h
  mv "$lib.tmp" "$lib"
  echo "$want_lib" > .tools/lib/.stamp
fi
