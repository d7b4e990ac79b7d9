# Sourced by the HTTP benchmark scripts (bench-cpu, bench-http, callgrind-service).
# start_bench_server WAIT_TENTHS [WRAPPER...]: runs $BIN (under WRAPPER, e.g. valgrind) on a
# free port with the bench partner token, data in $WORK/data, durability $DURABILITY; waits up
# to WAIT_TENTHS tenths of a second for /healthz, then stocks $BENCH_SKUS skus. Sets PORT, PID.
start_bench_server() {
  local wait_tenths=$1
  shift
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  RUST_LOG=warn "$@" "$BIN" --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" \
    --durability "$DURABILITY" --partner-token "bench:bench-token" 2>"$WORK/stderr" &
  PID=$!
  for _ in $(seq 1 "$wait_tenths"); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    kill -0 "$PID" 2>/dev/null || { cat "$WORK/stderr"; exit 1; }
    sleep 0.1
  done
  python3 benches/http/seed.py "$PORT" bench-token "$BENCH_SKUS" 1000000000000
}
