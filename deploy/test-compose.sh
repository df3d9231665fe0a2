#!/usr/bin/env bash
# make test-compose: the docker-compose.yml topology for real (needs Docker; not part of CI).
# Builds the images, starts everything, waits on the health checks, plays every protocol through
# both gateways from this host with ffprobe, prints timings, then `down -v` (also on failure and
# on Ctrl-C). Uses the project name peergate-test and the ports docker-compose.yml publishes.
# NO_BUILD=1 skips the build (images from a previous run). Measured on a loaded 2-core machine
# (no build cache): build 31 min, up -d to first 302 20 s, to all healthy 27 s; images
# peergate-gateway 13.2 MB, peergate-origin 25.3 MB.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if docker compose version >/dev/null 2>&1; then
	compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
	compose=(docker-compose)
else
	echo "neither 'docker compose' nor 'docker-compose' found (Debian 12: apt-get install docker-compose)" >&2
	exit 1
fi
compose+=(-p peergate-test)
for t in ffprobe curl; do command -v $t >/dev/null || { echo "$t not found: apt-get install -y ffmpeg curl" >&2; exit 1; }; done

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

cleanup() {
	trap - EXIT INT TERM HUP
	echo "== ${compose[*]} down -v"
	"${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

if [ -z "${NO_BUILD:-}" ]; then
	echo "== ${compose[*]} build"
	t=$(now)
	"${compose[@]}" build
	echo "build: $(since "$t") s"
fi
for img in peergate-gateway:local peergate-origin:local; do
	echo "image $img: $(docker image inspect -f '{{.Size}}' "$img" | awk '{ printf "%.1f MB", $1 / 1e6 }')"
done

echo "== ${compose[*]} up -d"
up=$(now)
"${compose[@]}" up -d --no-build

first302=""
for _ in $(seq 600); do
	code=$(curl -s -o /dev/null -w '%{http_code}' http://localhost:8080/demo/index.m3u8 || true)
	if [ "$code" = 302 ]; then first302=$(since "$up"); break; fi
	sleep 0.1
done
[ -n "$first302" ] || { echo "FAIL: no 302 from the gateway within 60 s" >&2; "${compose[@]}" logs --tail 30; exit 1; }
echo "up -d to first 302: $first302 s"

# Every service healthy (the images' own healthcheck subcommand, redis-cli ping).
for _ in $(seq 120); do
	unhealthy=""
	for id in $("${compose[@]}" ps -q); do
		s=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id")
		[ "$s" = healthy ] || unhealthy="$unhealthy $(docker inspect -f '{{.Name}}' "$id"):$s"
	done
	[ -z "$unhealthy" ] && break
	sleep 0.5
done
[ -z "$unhealthy" ] || { echo "FAIL: not healthy:$unhealthy" >&2; exit 1; }
echo "up -d to all healthy: $(since "$up") s"

fails=0
probe() { # label url [ffprobe options...]
	local label=$1 url=$2
	shift 2
	local t out
	t=$(now)
	if out=$(timeout 30 ffprobe -v error -rw_timeout 15000000 "$@" -show_entries stream=codec_name -of csv=p=0 "$url" 2>&1) &&
		grep -q h264 <<<"$out"; then
		echo "ok   $label $url ($(since "$t") s: $(tr '\n' ' ' <<<"$out"))"
	else
		echo "FAIL $label $url: $(tail -2 <<<"$out" | tr '\n' ' ')"
		fails=$((fails + 1))
	fi
}
playable=""
for gw in 8080 8090; do
	rtsp=$((gw + 474)) rtmp=$((gw - 6145))
	probe HLS "http://localhost:$gw/demo/index.m3u8"
	[ -n "$playable" ] || playable=$(since "$up")
	probe MPEG-TS "http://localhost:$gw/live/demo2/mpegts"
	probe RTSP "rtsp://localhost:$rtsp/demo" -rtsp_transport tcp
	probe RTMP "rtmp://localhost:$rtmp/static/demo"
	probe RTMP "rtmp://localhost:$rtmp/live/demo2"
done
probe "HLS (origin2 pulls demo from origin1 over RTSP)" "http://localhost:8080/relay/demo/index.m3u8"
echo "up -d to first played (HLS through the gateway): $playable s"
echo "admin on 127.0.0.1 only: $("${compose[@]}" port gateway 9080)"
if [ "$fails" -gt 0 ]; then
	echo "$fails probe(s) failed"
	echo "(RTMP through the gateway needs its RTMP listener, gateway/rtmpgw; a gateway without it"
	echo " publishes 1935 with nothing behind it, and ffprobe reads EOF in the handshake)"
	exit 1
fi
echo "all probes passed"
