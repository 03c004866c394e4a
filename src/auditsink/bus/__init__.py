"""An optional NATS JetStream bus between the receivers and the store (docs/bus.md)."""
