"""Journal backends chosen by URL."""

from saga_actors.journal.base import Journal, JournalConflictError, open_journal

__all__ = ["Journal", "JournalConflictError", "open_journal"]
