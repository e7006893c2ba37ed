"""Where the service API reads from, and where holders' sealed personal data is kept.

base.py       the repository interface (Store) and the views it answers with
embedded.py   the default: the engine's replayed state and the holder file; no server
postgres.py   PostgreSQL (asyncpg): holders, and a projection of the journal into tables
tail.py       reading durable journal records back from the segment files, in order
migrate.py    schema migrations: migrations/NNNN_name.sql applied in order, with a version table
config.py     the database settings

The journal stays the system of record in both: PostgreSQL holds a projection of it (for
queries and settlement) plus the sealed personal data the journal never carries.
"""
