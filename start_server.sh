#!/usr/bin/env bash
# Starts a vespid worker the way Vast.ai's serverless templates start a PyWorker: the template
# clones PYWORKER_REPO (this repository) and runs this script with Vast's environment.
#
# It installs vespid from the clone it lives in into a venv (once: a later run with the same
# sources reuses the venv), maps Vast's variable names onto vespid's where they differ, makes
# the instance's TLS certificate when USE_SSL=true and none is there yet, and then execs
# `vespid worker` in its own place, so that signals (SIGTERM on stop) reach the worker. The
# worker's output goes to stdout and is appended to $PYWORKER_LOG, where Vast keeps it.
#
#   start_server.sh [vespid worker flags...]   install if needed, then run the worker
#   start_server.sh --install-only             install if needed, then exit (for image builds)
#
# docs/vast.md lists the variables it reads; docs/worker.md every setting of the worker.
set -euo pipefail

WORKSPACE_DIR="${WORKSPACE_DIR:-/workspace}"
ENV_PATH="${ENV_PATH:-$WORKSPACE_DIR/worker-env}"
PYWORKER_LOG="${PYWORKER_LOG:-$WORKSPACE_DIR/pyworker.log}"
PYTHON="${PYTHON:-python3}"
USE_SSL="${USE_SSL:-true}"
VAST_SIGN_CERT_URL="${VAST_SIGN_CERT_URL:-https://console.vast.ai/api/v0/sign_cert/}"

say() { printf 'start_server.sh: %s\n' "$*" >&2; }

# Tell the autoscaler why this worker will never come up (as Vast's bootstrap does), then stop.
fail() {
    say "error: $1"
    local message=${1//\\/\\\\}
    message=${message//\"/\\\"}
    local addr addrs
    IFS=',' read -r -a addrs <<<"${REPORT_ADDR:-}"
    if command -v curl >/dev/null; then
        for addr in "${addrs[@]}"; do
            curl -fsS -m 10 -o /dev/null -H 'Content-Type: application/json' \
                -d "{\"id\": ${CONTAINER_ID:-0}, \"mtoken\": \"${MASTER_TOKEN:-}\", \
\"version\": \"start_server.sh\", \"error_msg\": \"$message\", \"url\": \"\"}" \
                "${addr%/}/worker_status/" || true
        done
    fi
    exit 1
}

# The vespid sources: the clone this script lives in; run from elsewhere (`curl ... | bash`),
# a clone of PYWORKER_REPO at PYWORKER_REF in $WORKSPACE_DIR/vast-pyworker.
source_dir() {
    local here
    here="$(cd "$(dirname "${BASH_SOURCE[0]:-.}")" && pwd)"
    if [[ -f "$here/pyproject.toml" && -d "$here/vespid" ]]; then
        printf '%s\n' "$here"
        return
    fi
    local dest="$WORKSPACE_DIR/vast-pyworker"
    [[ -n "${PYWORKER_REPO:-}" ]] || fail "not run from a vespid clone, and PYWORKER_REPO is unset"
    if [[ ! -d "$dest/.git" ]]; then
        git clone --quiet "$PYWORKER_REPO" "$dest" >&2 || fail "git clone $PYWORKER_REPO failed"
    fi
    if [[ -n "${PYWORKER_REF:-}" ]]; then
        git -C "$dest" checkout --quiet "$PYWORKER_REF" >&2 ||
            fail "git checkout $PYWORKER_REF failed"
    fi
    printf '%s\n' "$dest"
}

# What the install depends on: the package's files, by content (not by path or mtime).
fingerprint() {
    (cd "$1" && find pyproject.toml vespid -type f ! -name '*.pyc' -print0 |
        LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

install() {
    local src="$1" stamp="$ENV_PATH/.vespid-source" want
    want="$(fingerprint "$src")"
    if [[ -x "$ENV_PATH/bin/vespid" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        say "reusing the venv at $ENV_PATH (vespid from these sources is installed)"
        return
    fi
    if [[ ! -x "$ENV_PATH/bin/python" ]]; then
        "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
            fail "vespid needs Python 3.11 or newer; $PYTHON is older or missing (set PYTHON)"
        say "making a venv at $ENV_PATH"
        "$PYTHON" -m venv "$ENV_PATH" || fail "$PYTHON -m venv $ENV_PATH failed"
    fi
    say "installing vespid from $src into $ENV_PATH"
    (cd "$src" && "$ENV_PATH/bin/python" -m pip install --quiet .) >&2 ||
        fail "pip install of vespid into $ENV_PATH failed"
    printf '%s\n' "$want" >"$stamp"
}

# Vast's names for what vespid calls otherwise, and Vast's values vespid would refuse.
map_vast_environment() {
    case "${BACKEND:-}" in
        null | generic) ;;
        "") export BACKEND=generic ;;
        *)
            say "BACKEND=$BACKEND: served by vespid's generic worker (a passthrough to BACKEND_URL)"
            export BACKEND=generic
            ;;
    esac
    if [[ -z "${BACKEND_URL:-}" && -n "${MODEL_SERVER_URL:-}" && "$BACKEND" != null ]]; then
        BACKEND_URL="${MODEL_SERVER_URL%/}"
        if [[ -n "${MODEL_SERVER_PORT:-}" && ! "$BACKEND_URL" =~ ^https?://[^/]*:[0-9]+(/.*)?$ ]]
        then
            BACKEND_URL="$BACKEND_URL:$MODEL_SERVER_PORT"
        fi
        export BACKEND_URL
    fi
    if [[ -n "${MODEL_LOG:-}" && -z "${VESPID_LOG_LOADED:-}" ]]; then
        say "MODEL_LOG is not tailed without VESPID_LOG_LOADED (the line that means loaded);" \
            "readiness comes from HEALTHCHECK_ENDPOINT, or the backend answering HTTP"
        unset MODEL_LOG
    elif [[ -n "${MODEL_LOG:-}" && "${ROTATE_MODEL_LOG:-false}" == true && -e "$MODEL_LOG" ]]; then
        cat "$MODEL_LOG" >>"$MODEL_LOG.old" && : >"$MODEL_LOG"
    fi
    export USE_SSL
}

# Vast's instance certificate: a key made here, its request signed by Vast for CONTAINER_ID.
ensure_certificate() {
    [[ "$USE_SSL" == true ]] || return 0
    local cert="${VESPID_SSL_CERT_FILE:-/etc/instance.crt}" key="${VESPID_SSL_KEY_FILE:-/etc/instance.key}"
    export VESPID_SSL_CERT_FILE="$cert" VESPID_SSL_KEY_FILE="$key"
    [[ -s "$cert" && -s "$key" ]] && return 0
    [[ -n "${CONTAINER_ID:-}" ]] || fail "USE_SSL=true: CONTAINER_ID is needed to sign a certificate"
    say "USE_SSL=true: making $key and having Vast sign $cert"
    local csr="$key.csr" attempt delay=2
    (umask 077 && openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$key" -out "$csr" \
        -subj "/CN=vespid-worker" -addext "subjectAltName=IP:0.0.0.0" 2>/dev/null) ||
        fail "USE_SSL=true: openssl could not make a key and certificate request"
    for attempt in 1 2 3 4 5; do
        if curl -fsS -m 30 -o "$cert.part" -H 'Content-Type: application/octet-stream' \
            --data-binary "@$csr" "$VAST_SIGN_CERT_URL?instance_id=$CONTAINER_ID"; then
            mv "$cert.part" "$cert"
            return 0
        fi
        say "certificate signing, try $attempt of 5, failed"
        sleep "$delay"
        delay=$((delay * 2))
    done
    fail "USE_SSL=true: $VAST_SIGN_CERT_URL did not sign the certificate request"
}

main() {
    mkdir -p "$WORKSPACE_DIR"
    local src
    src="$(source_dir)"
    install "$src"
    if [[ "${1:-}" == --install-only ]]; then
        return 0
    fi
    map_vast_environment
    ensure_certificate
    say "starting $ENV_PATH/bin/vespid worker (BACKEND=$BACKEND); its log: $PYWORKER_LOG"
    exec > >(tee -a "$PYWORKER_LOG") 2>&1
    exec "$ENV_PATH/bin/vespid" worker "$@"
}

main "$@"
