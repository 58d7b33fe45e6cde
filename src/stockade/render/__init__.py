"""Back ends: the model written out for the real tools."""
