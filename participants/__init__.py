"""Example participant services: each a Ray actor with its own SQLite database."""
