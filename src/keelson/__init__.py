"""keelson: one tool and one spec for the whole life of a tabular model."""

__version__ = "0.1.0"
