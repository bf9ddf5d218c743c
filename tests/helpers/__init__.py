"""Test helpers, one place: synthetic studies and evaluators, image folders, tables, a PostgreSQL server."""
