"""The messages of the bus: their schemas, the strict parser, and one example file per message shape."""
