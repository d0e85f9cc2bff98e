"""agent.outputs: where records leave the service; `dispatch` is the one fan-out to the event bus (`events`),
MQTT (`mqtt`) and Prometheus (`metrics`)."""
