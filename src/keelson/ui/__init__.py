"""keelson.ui."""
