"""agent.state: what the service keeps across restarts (`store`), kept through Redis outages (`resilient`),
and the memory blobs it stores (`memory_blobs`)."""
