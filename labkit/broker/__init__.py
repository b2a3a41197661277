"""labkit.broker."""
