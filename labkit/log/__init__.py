"""labkit.log."""
