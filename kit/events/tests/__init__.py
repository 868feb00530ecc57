"""Tests of kit/events: producer, batch consumer and topics on a real broker."""
