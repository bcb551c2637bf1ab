"""keelson.deploy."""
