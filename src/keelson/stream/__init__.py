"""keelson.stream."""
