"""Kafka's wire protocol for the labkit broker: a listener bridged to its ROUTER (issue 13)."""
