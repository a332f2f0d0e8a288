"""The saga console: a browser view of every saga, with the operator's actions, served by
Ray Serve (``saga-actors console deploy``) or locally (``saga-actors console``)."""

from saga_actors.ops.console.app import build_app
from saga_actors.ops.console.settings import CONSOLE_APP_NAME, ConsoleSettings, find_token

__all__ = ["CONSOLE_APP_NAME", "ConsoleSettings", "build_app", "find_token"]
