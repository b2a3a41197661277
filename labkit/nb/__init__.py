"""labkit.nb."""
