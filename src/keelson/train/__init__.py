"""keelson.train."""
