#!/bin/sh
# Builds the sample camera's video: 20 s of a moving ball, H.264 in mp4 (GStreamer only, offline).
# Mount your own footage at /videos/sample.mp4 (or set CAMERA_VIDEO) for a realistic scene.
# Usage: make_sample.sh OUT.mp4
set -eu
out="${1:-/videos/sample.mp4}"
gst-launch-1.0 -q videotestsrc pattern=ball motion=sweep num-buffers=500 \
  ! video/x-raw,width=640,height=360,framerate=25/1 \
  ! videoconvert ! x264enc tune=zerolatency speed-preset=veryfast key-int-max=50 bitrate=800 \
  ! h264parse ! mp4mux ! filesink location="$out"
