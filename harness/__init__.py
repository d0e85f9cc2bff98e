"""Launchers of real servers (redis-server, mosquitto, Prometheus, the GStreamer RTSP camera, `scissor serve`)
on free loopback ports, shared by tests/ and bench/; never imported by the product, never a mock."""
