# Shared by the scripts/build-*.sh that build a Go helper into bin/ (sourced, not run).
#
# go_helper_init NAME HELP_LAST_LINE "$@" reads the arguments (--force, -h/--help: the calling
# script's header comment up to line HELP_LAST_LINE) and sets ROOT (the repository), FORCE (0 or 1),
# GO (the go command: $GO, else go on PATH, else /usr/local/go/bin/go) and say() (a message on stderr,
# prefixed with build-NAME).

go_helper_init() {
  local name="$1" help_last="$2" arg
  shift 2
  GO_HELPER_NAME="$name"
  ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  FORCE=0
  for arg in "$@"; do
    case "$arg" in
      --force) FORCE=1 ;;
      -h|--help) sed -n "2,${help_last}p" "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
      *) echo "build-$name: unknown argument: $arg" >&2; exit 2 ;;
    esac
  done
  GO="${GO:-}"
  if [[ -z "$GO" ]]; then
    if command -v go >/dev/null 2>&1; then GO=go
    elif [[ -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go
    else say "Go is not installed (need Go 1.26 or newer; set GO=/path/to/go)"; exit 1
    fi
  fi
}

say() { printf 'build-%s: %s\n' "$GO_HELPER_NAME" "$*" >&2; }
