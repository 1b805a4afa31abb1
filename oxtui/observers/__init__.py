"""What watches an engine without taking part in supervision: notifications ([notify]), Prometheus
([metrics]) and systemd's notify protocol. Each gets the engine as an `EngineFeed` (protocol.py):
the typed snapshot and the event stream. None of them imports the engine; the engine hands itself
out as a feed and starts them."""
