"""keelson.cli."""
