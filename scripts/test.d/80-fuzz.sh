#!/usr/bin/env bash
# cargo-fuzz smoke: every target fuzz/Cargo.toml declares (`cargo fuzz list`) runs for
# $FUZZ_SECONDS (default 5; FUZZ_SECONDS=600 is the long run) from its committed seeds and
# regressions. Fails on any crash, panic, sanitizer report, timeout or OOM and prints where
# the input is. Stable toolchain (RUSTC_BOOTSTRAP=1); cargo-fuzz (pinned) is installed once into
# $STOCKLEDGER_CACHE/cargo-fuzz; the instrumented build lives in $STOCKLEDGER_CACHE/fuzz-target*
# so a rerun is incremental. New corpus entries go to a temporary directory (or $FUZZ_CORPUS),
# never into fuzz/seeds or fuzz/regressions.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
CACHE=${STOCKLEDGER_CACHE:-$ROOT/.cache}
mkdir -p "$CACHE"
CF_VERSION=0.13.2
CF_ROOT="$CACHE/cargo-fuzz"
SECONDS_PER_TARGET=${FUZZ_SECONDS:-5}

if ! "$CF_ROOT/bin/cargo-fuzz" fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $CF_VERSION"; then
  # Its own target dir, so that an interrupted install resumes where it stopped.
  CARGO_TARGET_DIR="$CACHE/cargo-fuzz-build" \
    cargo install --quiet --locked --force cargo-fuzz --version "$CF_VERSION" --root "$CF_ROOT"
  rm -rf "$CACHE/cargo-fuzz-build"
fi
export PATH="$CF_ROOT/bin:$PATH"
# cargo-fuzz passes -Z flags (sanitizer, coverage); this lets a stable rustc accept them.
export RUSTC_BOOTSTRAP=1

CORPUS_BASE=${FUZZ_CORPUS:+$(realpath -m "$FUZZ_CORPUS")}
cd fuzz
mapfile -t TARGETS < <(cargo fuzz list)
if [ "${#TARGETS[@]}" -eq 0 ]; then echo "80-fuzz: cargo fuzz list found no target" >&2; exit 1; fi

# Sanitizer per target: AddressSanitizer, except targets that link the service (its C
# dependency librdkafka is not built for ASan). One target dir per sanitizer: sharing one
# would rebuild everything each time the flags change.
sanitizer_of() {
  case "$1" in
    http_bodies) echo none ;;
    *) echo "${FUZZ_SANITIZER:-address}" ;;
  esac
}
# Per-target libFuzzer options (dictionaries are picked up from fuzz/dicts/<target>.dict).
extra_args_of() {
  case "$1" in
    http_bodies) echo "-max_len=4096" ;;
  esac
}

WORK=$(mktemp -d "$CACHE/fuzz-run.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

failed=()
for t in "${TARGETS[@]}"; do
  san=$(sanitizer_of "$t")
  # FUZZ_CORPUS=<dir> keeps what a (long) run finds, e.g. fuzz/corpus (git-ignored).
  corpus="${CORPUS_BASE:-$WORK/corpus}/$t"
  mkdir -p "$corpus"
  inputs=("$corpus")
  for d in "seeds/$t" "regressions/$t"; do
    # Read only: libFuzzer writes new entries into the first directory only.
    if [ -d "$d" ] && [ -n "$(ls -A "$d")" ]; then inputs+=("$d"); fi
  done
  args=(-max_total_time="$SECONDS_PER_TARGET" -timeout="${FUZZ_TIMEOUT:-30}" -rss_limit_mb=2048
        -print_final_stats=1)
  if [ -n "${FUZZ_RUNS:-}" ]; then args+=(-runs="$FUZZ_RUNS"); fi
  if [ -f "dicts/$t.dict" ]; then args+=(-dict="dicts/$t.dict"); fi
  # shellcheck disable=SC2207
  args+=($(extra_args_of "$t"))
  printf -- '--- fuzz %s (%ss, sanitizer %s, inputs: %s)\n' "$t" "$SECONDS_PER_TARGET" "$san" "${inputs[*]:1}"
  status=0
  cargo fuzz run -O -s "$san" --target-dir "$CACHE/fuzz-target-$san" "$t" "${inputs[@]}" -- "${args[@]}" \
    >"$WORK/$t.log" 2>&1 || status=$?
  grep -E '^(stat::|#[0-9]+ *DONE)' "$WORK/$t.log" | tr '\n' ' ' || true
  echo
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$WORK/$t.log"
    # libFuzzer's "Test unit written to <path>" (crash-, timeout-, oom-, leak-...), relative to fuzz/.
    found=$(sed -n 's/.*Test unit written to \([^ ]*\).*/\1/p' "$WORK/$t.log" | tail -n 1)
    echo "80-fuzz: $t FAILED (exit $status); input: ${found:-see the log above}" >&2
    if [ -n "$found" ]; then
      echo "  reproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O -s $san --target-dir $CACHE/fuzz-target-$san $t $found" >&2
      echo "  then keep it as fuzz/regressions/$t/<name> once fixed" >&2
    fi
    failed+=("$t")
  fi
done

if [ "${#failed[@]}" -ne 0 ]; then
  echo "80-fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
echo "80-fuzz: ${#TARGETS[@]} targets, ${SECONDS_PER_TARGET}s each, no finding"
