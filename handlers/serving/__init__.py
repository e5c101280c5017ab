"""The serving core: loaded models, one forward pass per batch, answers; no Kafka, no Flask."""
