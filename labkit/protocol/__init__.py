"""Pure bytes: the frame envelope and the record-batch codec. No sockets, no files."""
