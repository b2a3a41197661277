"""Kafka's wire protocol for the labkit broker (issue 13): a listener bridged to its ROUTER
(``listener``, ``codec``, ``apis``) and the record-batch v2 converter (``batches``,
``compression``)."""
