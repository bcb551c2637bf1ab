"""keelson.registry."""
