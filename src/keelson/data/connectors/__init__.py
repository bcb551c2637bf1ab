"""One module per connector family, registered by kind in :mod:`keelson.data.sources`.

``files``: CSV, Parquet, JSON and JSONL from a local path or any fsspec URL;
``sql``: a query through SQLAlchemy; ``http``: a paginated JSON API.
"""
