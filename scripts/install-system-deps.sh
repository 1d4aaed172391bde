#!/usr/bin/env bash
# Installs the system packages Experience Monitor needs on Debian 12 (bookworm):
# a Java runtime and Maven for the embedded Kafka broker, Prometheus and Alertmanager for
# the alerting tests, make, venv support for Python, Chromium for the browser tests and wrk
# for the collector bench. Idempotent: checks first, and
# runs `apt-get update` once, only when something is actually missing.
set -euo pipefail

missing=()

need_command() { # need_command COMMAND PACKAGE
    if ! command -v "$1" >/dev/null 2>&1; then
        missing+=("$2")
    fi
}

need_package() { # need_package PACKAGE (for packages without a telling command on PATH)
    if ! dpkg -s "$1" >/dev/null 2>&1; then
        missing+=("$1")
    fi
}

need_command make make
# tmux drives `expmon demo` in a real terminal in the demo's integration test
need_command tmux tmux
# openssl makes the throw-away CA of the local broker's TLS listeners (integration tests)
need_command openssl openssl
need_command java openjdk-17-jre-headless
need_command mvn maven
need_command prometheus prometheus
need_command promtool prometheus
# Debian installs the binary as prometheus-alertmanager, not alertmanager.
if ! command -v prometheus-alertmanager >/dev/null 2>&1 && ! command -v alertmanager >/dev/null 2>&1; then
    need_package prometheus-alertmanager
fi
# amtool (same package) checks deploy/alertmanager/alertmanager.yml in the unit tests.
need_command amtool prometheus-alertmanager
# headless Chromium and its WebDriver drive the real-browser tests of the page snippet
need_command chromium chromium
need_command chromedriver chromium-driver
# wrk is the HTTP load generator of the collector bench (`expmon bench --scenario collector`)
need_command wrk wrk
# npm builds the page snippet (web/: web-vitals bundled by esbuild); Node 20 ships it
need_command npm npm
# Debian's python3 ships without ensurepip; `python3 -m venv` then fails half-way.
PYTHON="${PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    missing+=(python3 python3-venv)
elif ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi

if [ "${#missing[@]}" -eq 0 ]; then
    echo "system dependencies: all present"
    exit 0
fi

# De-duplicate (prometheus can be listed twice) while keeping the order.
mapfile -t packages < <(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++')
echo "system dependencies: installing ${packages[*]}"

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "error: need root or sudo to install: ${packages[*]}" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: apt-get not found; install by hand: ${packages[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}"
