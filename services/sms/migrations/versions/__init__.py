"""Revisions of the sms schema, applied in order."""
