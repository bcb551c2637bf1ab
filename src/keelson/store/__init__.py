"""keelson.store."""
