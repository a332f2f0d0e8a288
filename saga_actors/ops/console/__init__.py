"""The saga console: a browser view of every saga, with the operator's actions, served by
Ray Serve (``saga-actors console deploy``) or locally (``saga-actors console``)."""

from typing import Any

from saga_actors.ops.console.settings import CONSOLE_APP_NAME, ConsoleSettings, find_token

__all__ = ["CONSOLE_APP_NAME", "ConsoleSettings", "build_app", "find_token"]


def __getattr__(name: str) -> Any:
    # every `saga-actors` command imports this package; Starlette and the pages only
    # when a console is built (73 ms of each command's start otherwise)
    if name == "build_app":
        from saga_actors.ops.console.app import build_app

        return build_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
