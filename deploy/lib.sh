# Shared by deploy/quickstart.sh and deploy/test.sh: make sure what the build
# needs is on the machine. Pingora's zlib-ng needs cmake and a C compiler.
# As root with apt-get, install what is missing; otherwise print the command.

ensure_build_deps() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "vigile: cargo is not installed. Install Rust first: https://rustup.rs" >&2
    exit 1
  fi
  local missing=()
  command -v cmake >/dev/null 2>&1 || missing+=(cmake)
  command -v cc >/dev/null 2>&1 || missing+=(build-essential)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "vigile: installing ${missing[*]} (needed to build Pingora)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "vigile: the build needs ${missing[*]}. Run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
}
