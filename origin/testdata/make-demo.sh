#!/bin/sh
# Regenerates demo.ts, the looped demo clip (H.264 main 640x360 25 fps + AAC-LC 44.1 kHz stereo sine,
# 10 s, about 0.6 MB): testsrc2 picture with a running timecode, keyframe every second.
set -eu
cd "$(dirname "$0")"
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=640x360:rate=25,drawtext=timecode='00\:00\:00\:00':rate=25:fontsize=40:fontcolor=white:box=1:boxcolor=black@0.6:x=(w-tw)/2:y=h-th-20,drawtext=text='peergate demo':fontsize=24:fontcolor=yellow:box=1:boxcolor=black@0.6:x=w-tw-10:y=10" \
  -f lavfi -i "sine=frequency=440:sample_rate=44100" \
  -t 10 -c:v libx264 -preset veryfast -profile:v main -pix_fmt yuv420p -g 25 -keyint_min 25 -sc_threshold 0 \
  -b:v 400k -maxrate 450k -bufsize 800k -c:a aac -b:a 64k -ac 2 -f mpegts demo.ts
