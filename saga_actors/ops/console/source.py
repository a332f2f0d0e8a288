"""Where the console's answers come from: the registry (or, while it does not answer, the
journal) and the supervisor, through the very calls the ``saga-actors`` command makes. A
saga's input is shown only through its input model, so secret fields stay masked."""

from __future__ import annotations

from typing import Any

import click
from pydantic import BaseModel

from saga_actors.ops import actions
from saga_actors.ops.cluster import Cluster
from saga_actors.ops.console.settings import ConsoleSettings


class ConsoleError(Exception):
    """A question or an action the console cannot answer, with the reason to show and the
    HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message, status)
        self.message, self.status = message, status


class Source:
    """The console's reads and actions. Each raises :class:`ConsoleError` with the CLI's
    own words for what went wrong."""

    def __init__(self, settings: ConsoleSettings, cluster: Cluster | None = None) -> None:
        self.settings = settings
        self.cluster = cluster or Cluster(settings.address, settings.namespace)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except click.ClickException as exc:
            status = (404 if exc.message.startswith("no saga with id") else
                      503 if " did not answer" in exc.message else 409)
            raise ConsoleError(exc.message, status) from None

    def overview(self) -> dict[str, Any]:
        return self._call(self.cluster.query, "overview")

    def sagas(self, **filters: Any) -> list[dict[str, Any]]:
        return self._call(self.cluster.query, "list", **filters)

    def saga(self, saga_id: str) -> dict[str, Any]:
        return self._call(actions.get_saga, self.cluster, saga_id)

    def seq(self, saga_id: str) -> int:
        """How far the saga has gone (its last transition's number): a cheap question."""
        return self._call(self.cluster.query, "seq", saga_id)

    def act(self, action: str, saga_id: str, **fields: Any) -> str:
        """Run one of :data:`forms.ACTIONS`; what happened, in the CLI's words."""
        return self._call(getattr(actions, action), self.cluster, saga_id, **fields)

    def saga_input(self, saga_id: str) -> dict[str, Any]:
        """The input through its model: ``SecretStr`` fields come out masked. Refused when
        the model is not to be had here (then which fields are secret cannot be told)."""
        raw = self._call(self.cluster.query, "saga_input", saga_id)
        what = f"{raw['saga_type']!r} v{raw['version']}"
        try:
            from saga_actors.ray.definitions import KVDefinitions

            definition = KVDefinitions(self.settings.namespace).get(raw["saga_type"],
                                                                     raw["version"])
        except Exception as exc:  # its code cannot be loaded in this process
            raise ConsoleError(f"the input is not shown: the definition of {what} cannot be "
                               f"loaded here ({type(exc).__name__}: {exc}), so which of its "
                               "fields are secret cannot be told", 409) from None
        if definition is None:
            raise ConsoleError(f"the input is not shown: no definition of {what} is "
                               "registered, so which of its fields are secret cannot be "
                               "told", 409)
        return mask_input(definition.input_model, raw["input"], what)


def mask_input(model: type[BaseModel], data: dict[str, Any], what: str) -> dict[str, Any]:
    """``data`` through ``model``: every ``SecretStr`` (``SecretBytes``) field masked."""
    try:
        return model.model_validate(data).model_dump(mode="json")
    except Exception as exc:
        raise ConsoleError(f"the input is not shown: it no longer validates against "
                           f"{what}'s input model ({type(exc).__name__}), so which of its "
                           "fields are secret cannot be told", 409) from None
