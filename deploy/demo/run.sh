#!/usr/bin/env bash
# make demo: a local peergate cluster without Docker. Starts redis-server on 6379 unless one
# answers there, then origin1 (stream `demo`), origin2 (stream `live/demo2`), both looping
# origin/testdata/demo.ts as live video, and the gateway, in the foreground. Ctrl-C stops
# everything this script started.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
bin="${BIN:-bin}"
conf=deploy/demo

for b in gateway origin; do
	[ -x "$bin/$b" ] || { echo "missing $bin/$b: run 'make build' (or 'make demo')" >&2; exit 1; }
done

pids=()
redis_pid=""
nosig=""
command -v setsid >/dev/null 2>&1 && nosig=setsid
tmp="$(mktemp -d)"

cleanup() {
	local code=$?
	trap - INT TERM HUP EXIT
	# A closed terminal (SIGHUP) or a dead pipe must not stop the clean-up half way.
	trap '' PIPE
	set +e
	[ -n "$signalled" ] && code=0 # stopping on request is a clean exit, not make's "Error 143"
	echo
	echo "stopping the demo${signalled:+ ($signalled)}:"
	# The binaries run in their own sessions, so this TERM is the only signal they get: the
	# origins turn draining, wait for viewers up to drain_timeout (5 s), deregister and exit.
	for i in "${!pids[@]}"; do
		echo "  ${names[$i]} (pid ${pids[$i]}): SIGTERM"
		kill -TERM "${pids[$i]}" 2>/dev/null
	done
	for i in "${!pids[@]}"; do
		for _ in $(seq 150); do kill -0 "${pids[$i]}" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "${pids[$i]}" 2>/dev/null; then
			echo "  ${names[$i]} still running after 15 s: SIGKILL"
			kill -KILL "${pids[$i]}" 2>/dev/null
		fi
		wait "${pids[$i]}" 2>/dev/null
		echo "  ${names[$i]} stopped"
	done
	# Redis last, so the origins could deregister.
	if [ -n "$redis_pid" ]; then
		echo "  redis-server (pid $redis_pid, started by this demo): SIGTERM"
		kill -TERM "$redis_pid" 2>/dev/null
		wait "$redis_pid" 2>/dev/null
		echo "  redis-server stopped"
	elif [ -n "$redis_reused" ]; then
		echo "  redis-server on 127.0.0.1:6379 left running: this demo did not start it"
	fi
	rm -rf "$tmp"
	echo "  removed $tmp"
	exit "$code"
}
trap cleanup EXIT
signalled=""
redis_reused=""
names=()
# Ctrl-C, kill (TERM) and a closed terminal (HUP) all stop the demo the same way.
trap 'signalled=SIGINT; exit 130' INT
trap 'signalled=SIGTERM; exit 143' TERM
trap 'signalled=SIGHUP; exit 129' HUP

# prefix LABEL: copies stdin to stdout with LABEL before each line (redis-server's lines), one
# write per line, reading in blocks (sed -u reads a byte per system call).
prefix() {
	if command -v stdbuf >/dev/null 2>&1; then
		exec stdbuf -oL sed "s/^/$1 /"
	fi
	exec sed -u "s/^/$1 /"
}

redis_up() {
	if command -v redis-cli >/dev/null 2>&1; then
		[ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]
	else
		(exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && head -c5 <&3 | grep -q PONG) 2>/dev/null
	fi
}

if redis_up; then
	redis_reused=1
	echo "using the redis-server already answering on 127.0.0.1:6379: this demo did not start it and"
	echo "will leave it running (stop it yourself, e.g. redis-cli -p 6379 shutdown nosave)"
else
	command -v redis-server >/dev/null 2>&1 || { echo "redis-server not found: apt-get install -y redis-server" >&2; exit 1; }
	# Its own session keeps Ctrl-C away from Redis, so the origins can still deregister on the way out.
	echo "starting redis-server on 127.0.0.1:6379 (stopped last when the demo stops)"
	$nosig redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no --dir "$tmp" \
		> >(trap '' INT TERM HUP; prefix '[redis]  ') 2>&1 &
	redis_pid=$!
	for _ in $(seq 50); do redis_up && break; sleep 0.1; done
	redis_up || { echo "redis-server did not start on 127.0.0.1:6379" >&2; exit 1; }
fi

# Each binary in its own session: only cleanup signals it (once; a second signal would cut the
# drain short). The binaries label their own lines (-log-prefix) and write them in batches from
# a bounded buffer, so no pipe stands between a redirect and its log line (a prefixing sed
# process per line would cost as much CPU as the redirect itself).
start() { # name binary config
	$nosig "$bin/$2" -config "$conf/$3" -log-prefix "[$1] " 2>&1 &
	pids+=($!)
	names+=("$1")
}
start origin1 origin origin1.yaml
start origin2 origin origin2.yaml
start gateway gateway gateway.yaml

# Ready once the gateway has its first registry snapshot and both origins are in it.
ready=""
for _ in $(seq 100); do
	if command -v curl >/dev/null 2>&1; then
		if curl -fsS http://127.0.0.1:9080/readyz >/dev/null 2>&1 &&
			[ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/live/demo2/mpegts)" = 302 ] &&
			[ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/demo/mpegts)" = 302 ]; then
			ready=1
			break
		fi
	else
		sleep 2; ready=1; break
	fi
	for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { echo "a process exited during start-up (port busy?)" >&2; exit 1; }; done
	sleep 0.1
done
[ -n "$ready" ] || { echo "the gateway did not become ready within 10 s" >&2; exit 1; }

cat <<'MSG'

peergate demo is running. Play through the gateway (it redirects, the origin serves):
  ffplay http://127.0.0.1:8080/demo/index.m3u8           # HLS from origin1 (clock, test pattern, 440 Hz tone)
  ffplay http://127.0.0.1:8080/live/demo2/mpegts         # HTTP MPEG-TS from origin2
  open http://127.0.0.1:8080/demo/embed.html             # browser player page
  ffplay rtsp://127.0.0.1:8554/demo                      # RTSP: the gateway answers DESCRIBE with a 302 to origin1
  ffplay rtmp://127.0.0.1:1935/static/demo               # RTMP through the gateway (`static/demo` is NAME `demo`)
  ffplay rtmp://127.0.0.1:1935/live/demo2                # RTMP through the gateway to origin2
  ffprobe -v error -show_entries stream=codec_name,width,height http://127.0.0.1:8080/demo/index.m3u8
Fan-out: origin1 declares capacity.max_clients 4; play demo 5 or more times at once (e.g. several
  ffplay windows) and the gateway sends the 5th on to origin2, which pulls demo from origin1 once.
Publish your own: ffmpeg -re -i FILE -c copy -f flv rtmp://127.0.0.1:1935/live/mine      # RTMP through the gateway
              or: ffmpeg -re -i FILE -c copy -f rtsp rtsp://127.0.0.1:8554/live/mine     # RTSP through the gateway
  then play http://127.0.0.1:8080/live/mine/index.m3u8
Redirects and cluster view:
  curl -i http://127.0.0.1:8080/demo/mpegts              # 302 -> http://127.0.0.1:8081/demo/mpegts (origin1)
  curl -s http://127.0.0.1:8080/demo/index.m3u8          # HLS content steering (http.steering): one pathway per copy
  curl -i http://127.0.0.1:8080/live/demo2/index.m3u8    # 302 -> http://127.0.0.1:8082/live/demo2/index.m3u8 (origin2)
  curl -i 'http://127.0.0.1:8080/demo/mpegts?token=abc'  # path and query are kept
  curl -i http://127.0.0.1:8080/nope/index.m3u8          # 404: no origin has it
  curl -s http://127.0.0.1:9080/api/v1/origins           # cluster view
  curl -s http://127.0.0.1:9080/api/v1/streams
  curl -s 'http://127.0.0.1:9080/api/v1/tree?name=demo'  # owner and relays of demo
  curl -s 'http://127.0.0.1:9080/api/v1/explain?name=demo&proto=http&client=10.0.0.1'
  curl -s http://127.0.0.1:9080/metrics | grep ^peergate
Origins' admin: http://127.0.0.1:9081/readyz, http://127.0.0.1:9082/readyz (metrics on /metrics).
Ctrl-C (or kill PID, or closing the terminal) stops everything this script started.

MSG

# Stay in the foreground until Ctrl-C (or kill, or the terminal closing) or until one of the processes dies.
set +e
wait -n "${pids[@]}"
echo "a peergate process exited; stopping the demo" >&2
exit 1
