"""How the console is set up: where it listens, which token opens its actions, and whether
its read-only pages may be opened without one. Only a hash of the token is kept."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from saga_actors.constants import DEFAULT_NAMESPACE

CONSOLE_APP_NAME = "saga_actors_console"  # the Ray Serve application's name
DEFAULT_PORT = 8265 + 100  # beside Ray's dashboard (8265), unused by Ray itself
TOKEN_ENV = "SAGA_ACTORS_CONSOLE_TOKEN"
NO_TOKEN = ("the console has no token, so nothing could open it: pass --token, set "
            f"{TOKEN_ENV}, run Ray with token authentication (its token is then used), or "
            "choose --open-read to let anyone who reaches it read (never act)")


class ConsoleSettings(BaseModel):
    """The console's settings (passed into the Serve replica; no environment read there)."""

    model_config = {"frozen": True}

    address: str | None = Field(None, description="The Ray cluster (HOST:PORT) whose sagas it "
                                "shows; None inside the cluster (a Serve replica).")
    namespace: str = Field(DEFAULT_NAMESPACE, description="The runtime's Ray namespace.")
    token_sha256: str | None = Field(None, description="SHA-256 (hex) of the token that "
                                     "opens actions (and pages, unless open_read).")
    token_source: str = Field("none", description="Where the token came from, for the banner.")
    open_read: bool = Field(False, description="Read-only pages need no token (explicitly "
                            "chosen; actions always need one).")
    live_every_s: float = Field(1.0, gt=0, description="How often a live saga page refreshes.")
    overview_every_s: float = Field(2.0, gt=0, description="How often the overview refreshes.")
    page_size: int = Field(50, ge=1, le=1000, description="Sagas per list page.")

    @model_validator(mode="after")
    def _something_opens_it(self) -> ConsoleSettings:
        if self.token_sha256 is None and not self.open_read:
            raise ValueError(NO_TOKEN)
        return self


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def find_token(explicit: str | None = None) -> tuple[str | None, str]:
    """The token that opens the console, and where it came from: ``explicit`` (``--token``),
    else ``SAGA_ACTORS_CONSOLE_TOKEN``, else Ray's own (``RAY_AUTH_TOKEN``, the file at
    ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``); (None, "none") if there is none."""
    if explicit:
        return explicit.strip(), "--token"
    if os.environ.get(TOKEN_ENV, "").strip():
        return os.environ[TOKEN_ENV].strip(), TOKEN_ENV
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return os.environ["RAY_AUTH_TOKEN"].strip(), "Ray's token (RAY_AUTH_TOKEN)"
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        token = path.read_text().strip()
    except OSError:
        return None, "none"
    return (token, f"Ray's token ({path})") if token else (None, "none")
