"""keelson.monitor."""
