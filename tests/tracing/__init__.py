"""Tracing across processes: one trace from the gateway to the services and Kafka."""
