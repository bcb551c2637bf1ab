"""keelson.security."""
