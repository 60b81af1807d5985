#!/usr/bin/env bash
# Idle footprint of patchd: resident memory and CPU over a quiet period on a
# host that has an amazon-ssm-agent tree (state folders, logs) and an IMDS to
# poll, scraped by Prometheus every 15 s as a monitored host would be.
#
# Usage: bench-idle.sh PATCHD_BINARY [SECONDS]   (default 600; `make bench-idle
# BENCH_IDLE_SECONDS=60` for a quick run). Prints a Markdown table row set.
set -euo pipefail

bin=${1:?usage: bench-idle.sh PATCHD_BINARY [SECONDS]}
secs=${2:-600}
[ -x "$bin" ] || { echo "bench-idle: $bin is not an executable; run make build" >&2; exit 1; }

work=$(mktemp -d /tmp/patchd-bench-idle.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }

# An agent tree as a running amazon-ssm-agent leaves it: instance folder with
# empty state folders, a few days of log lines, an orchestration folder.
inst=i-0123456789abcdef0
mkdir -p "$work"/ssm/$inst/document/state/{pending,current,corrupt} \
         "$work"/ssm/$inst/document/orchestration "$work"/logs \
         "$work"/hooks/{pre-patch,pre-reboot,post-patch} "$work"/state
for i in $(seq 1 2000); do
  printf '2026-11-20 10:%02d:%02d.%04d INFO [ssm-agent-worker] [MessageService] [MGSInteractor] health check %d\n' \
    $((i / 60 % 60)) $((i % 60)) "$i" "$i"
done > "$work"/logs/amazon-ssm-agent.log
: > "$work"/logs/errors.log
printf '#!/bin/sh\necho pre-patch\n' > "$work"/hooks/pre-patch/10-echo
chmod 0755 "$work"/hooks/pre-patch/10-echo
chmod -R go-w "$work"/hooks
: > "$work"/patchd.yaml

imds_port=$(free_port)
web_port=$(free_port)

# A local IMDSv2 server (the pinned amazon-ec2-metadata-mock) so that the role
# watcher's polls are real requests, not timeouts to 169.254.169.254.
mock=""
if go tool -n ec2-metadata-mock >/dev/null 2>&1; then
  mock=$(go tool -n ec2-metadata-mock)
  HOME="$work" "$mock" --imdsv2 --hostname 127.0.0.1 --port "$imds_port" >"$work"/imds.log 2>&1 &
  pids+=($!)
fi

# The mock serves credentials: the compliance report, were one due, goes to
# a refused loopback port, never to AWS.
AWS_ENDPOINT_URL_SSM=http://127.0.0.1:9 "$bin" run --config.file="$work"/patchd.yaml \
  --path.hooks="$work"/hooks --path.state="$work"/state \
  --path.agent-data="$work"/ssm --path.agent-logs="$work"/logs \
  --control.socket="$work"/patchd.sock \
  --web.listen-address=127.0.0.1:"$web_port" \
  --imds.endpoint=http://127.0.0.1:"$imds_port" \
  --agent.service=command --agent.restart-command=true \
  --log.level=warn >"$work"/patchd.log 2>&1 &
pid=$!
pids+=("$pid")

# Wait (bounded) until patchd answers, then let start-up settle before the
# measured window so the one-off start cost is not counted as idle.
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:$web_port/metrics" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { echo "bench-idle: patchd exited:" >&2; cat "$work"/patchd.log >&2; exit 1; }
  sleep 0.1
done
sleep 5

hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }

t0=$(date +%s.%N); c0=$(ticks); rss_max=$(rss_kb); rss_start=$rss_max
scrapes=0
end=$(( $(date +%s) + secs ))
while [ "$(date +%s)" -lt "$end" ]; do
  curl -fsS -o /dev/null "http://127.0.0.1:$web_port/metrics" && scrapes=$((scrapes + 1))
  r=$(rss_kb); [ "$r" -gt "$rss_max" ] && rss_max=$r
  left=$(( end - $(date +%s) )); [ "$left" -gt 15 ] && left=15
  [ "$left" -gt 0 ] && sleep "$left"
done
t1=$(date +%s.%N); c1=$(ticks); rss_end=$(rss_kb)
kill -0 "$pid" || { echo "bench-idle: patchd died during the run" >&2; exit 1; }

size=$(stat -c %s "$bin")
awk -v c0="$c0" -v c1="$c1" -v hz="$hz" -v t0="$t0" -v t1="$t1" -v rs="$rss_start" -v re="$rss_end" \
    -v rm="$rss_max" -v size="$size" -v n="$scrapes" -v secs="$secs" 'BEGIN {
  wall = t1 - t0; cpu = (c1 - c0) / hz
  printf "| measure | patchd | target |\n|---|---|---|\n"
  printf "| window | %.0f s, %d scrapes of /metrics | 600 s |\n", wall, n
  printf "| RSS at start / end / max | %.1f / %.1f / %.1f MiB | < 20 MB |\n", rs/1024, re/1024, rm/1024
  printf "| CPU (user+sys) | %.2f s = %.3f %% of one core | < 0.1 %% |\n", cpu, 100 * cpu / wall
  printf "| binary size (stripped) | %.1f MiB | |\n", size/1048576
}'
if [ -s "$work"/patchd.log ]; then
  echo
  echo "patchd warnings during the run:"
  sed 's/^/  /' "$work"/patchd.log | head -20
fi
