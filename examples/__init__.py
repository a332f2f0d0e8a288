"""Example sagas."""
