"""labkit.client."""
