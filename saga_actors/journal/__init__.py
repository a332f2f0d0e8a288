"""Journal backends chosen by URL."""

from saga_actors.journal.base import Journal, JournalConflictError
from saga_actors.journal.by_url import open_journal

__all__ = ["Journal", "JournalConflictError", "open_journal"]
