"""Kafka's wire protocol for the labkit broker (issue 13): the record-batch v2 converter
(``batches``, ``compression``) and, beside it, the listener."""
