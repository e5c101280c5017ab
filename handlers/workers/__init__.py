"""Kafka workers: ingest of event_topic, the predictor, model-update notices."""
