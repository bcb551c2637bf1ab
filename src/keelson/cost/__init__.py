"""keelson.cost."""
