"""How events and commands travel: posting them, transports, Kafka plumbing, dead-letter reports."""
