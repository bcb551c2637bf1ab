"""keelson.features."""
