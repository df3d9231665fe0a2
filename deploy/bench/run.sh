#!/usr/bin/env bash
# make bench-http: the gateway's redirect rate against nginx `return 302` and bare net/http
# (and bare fasthttp when its module can be fetched), with a registry of 100,000 streams in a
# private redis-server. Arguments go to the Go harness (deploy/bench/main.go), e.g.
#   deploy/bench/run.sh -large 1000000          # plus a gateway on 1,000,000 streams (own Redis), same rounds
#   deploy/bench/run.sh -cold-start -streams 1000000 -origins 100   # cold start only: first redirect, ready, RSS
#   deploy/bench/run.sh -profile /tmp/gw.prof    # CPU profile of the HTTP listener under wrk
#   deploy/bench/run.sh -rounds 5 -duration 4s
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
GO="${GO:-go}"
bin="${BIN:-bin}"

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v stdbuf >/dev/null 2>&1 || need+=(coreutils)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		apt-get install -y "${need[@]}" || { apt-get update && apt-get install -y "${need[@]}"; }
	else
		echo "missing ${need[*]}: sudo apt-get install -y ${need[*]}" >&2
		exit 1
	fi
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
$GO build -o "$bin/gateway" ./gateway
$GO build -o "$tmp/bench" ./deploy/bench
fast=()
# The fasthttp baseline is its own module (the product does not depend on it); skip it offline.
if (cd deploy/bench/fasthttp302 && $GO build -o "$tmp/fasthttp302" . 2>/dev/null); then
	fast=(-fasthttp "$tmp/fasthttp302")
else
	echo "(fasthttp baseline skipped: its module could not be fetched)" >&2
fi
"$tmp/bench" -gateway "$bin/gateway" "${fast[@]}" "$@"
