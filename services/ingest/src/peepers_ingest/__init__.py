"""Ingest: ML's webhook into Kafka, answered in well under 500 ms, none lost."""

__all__: list[str] = []
