"""Admission: what happens to an event between decode and store (match, policy, redact)."""
