"""labkit.cli."""
