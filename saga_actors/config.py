"""Runtime configuration. Precedence, stated once: defaults < SAGA_ACTORS_* environment <
explicit arguments. Config is passed INTO actors; actors never read the environment.

pydantic-settings reads the environment: each ``SAGA_ACTORS_<FIELD>`` is validated as its
field's type (a tuple from JSON, a bool from true/false/1/0), and a bad value is a
:class:`ConfigError` naming the variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from saga_actors.constants import DEFAULT_NAMESPACE
from saga_actors.errors import ConfigError
from saga_actors.urls import is_postgres, participant_store_url

ENV_PREFIX = "SAGA_ACTORS_"
AUTO_CPUS_PER_HOST = 2.0  # hosts="auto": one host (and one bus) per this many CPUs


class RuntimeConfig(BaseSettings):
    """Where the journal lives, which Ray namespace the runtime uses, how it logs."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", env_prefix=ENV_PREFIX,
                                      env_ignore_empty=True)

    @model_validator(mode="before")
    @classmethod
    def _auto_hosts(cls, data: Any) -> Any:
        """``hosts="auto"``: the count follows the cluster (it starts at 1, the supervisor
        sets it from the cluster's CPUs)."""
        if isinstance(data, dict) and data.get("hosts") == "auto":
            data = {**data, "hosts": 1}
            data["cpus_per_host"] = data.get("cpus_per_host") or AUTO_CPUS_PER_HOST
        return data

    namespace: str = Field(DEFAULT_NAMESPACE, min_length=1, description="Ray namespace.")
    data_dir: str = Field(".saga_actors", description="Local folder for SQLite files.")
    journal_url: str = Field("", description="Journal URL; default: SQLite in data_dir.")
    store_url: str = Field(
        "", description="Where the participants' stores live: empty for SQLite files in "
        "data_dir, or `postgresql://user@host:port/db` for a schema per participant "
        "(`participant_<name>`; `?prefix=` changes `participant_`).")
    log_level: str = Field("INFO", description="loguru level for every component.")
    max_dedicated: int = Field(64, ge=1, description="Dedicated saga actors alive at once.")
    hosts: int = Field(2, ge=1, description="SagaHost actors for `hosted` placement (~1 per "
                       "core); `\"auto\"`: one per `cpus_per_host` CPUs of the cluster.")
    cpus_per_host: float | None = Field(
        None, gt=0, description="Set (by hosts=\"auto\", default 2): the hosts and buses "
        "follow the cluster, one per this many CPUs, re-checked as nodes join and leave.")
    name_tasks: bool = Field(
        True, description="Name each participant call `<saga_id>/<step>` for the dashboard. "
        "Ray keeps ~7.5 KB per distinct task name in the participant's process (measured on "
        "Ray 2.60), so very long-lived, high-volume participants may turn it off.",
    )
    recycle_after_tasks: int = Field(
        3_000, ge=0, description="A participant or saga host restarts its own process once "
        "it has run (participant) or sent (host) this many Ray tasks: Ray keeps state per "
        "distinct task name in a process for its whole life (about 6 KB per named call on "
        "each side here), so a process that lives for months would grow without bound. It "
        "drains for up to a second, exits, and Ray restarts it; a call cut short is sent "
        "again with the same idempotency key, and a host's sagas resume from the journal. "
        "3,000 keeps every process flat over a 200,000-saga soak (20,000 let hosts grow to "
        "~500 MB between recycles, measured). 0: never.",
    )
    batch_calls: bool = Field(
        True, description="In `hosted` placement, send the calls that sagas of one host make "
        "to one participant in the same instant as one Ray task, named with each "
        "`<saga_id>/<step>` it carries (Ray's per-call cost is most of a hosted saga's CPU). "
        "False: one Ray task per call, named `<saga_id>/<step>`, under any load.",
    )
    max_input_bytes: int = Field(
        1_048_576, ge=1, description="Largest saga input accepted, as journaled JSON. The "
        "input is rewritten with every transition: keep big documents elsewhere and pass "
        "their keys.",
    )
    participant_max_concurrency: int = Field(
        1000, ge=1, description="Ray calls one participant actor serves at once (a hosted "
        "batch is one call carrying up to 64 requests).",
    )
    runner_answer_timeout_s: float = Field(
        30.0, gt=0, description="How long the supervisor waits for a saga's actor or host to "
        "answer an operator's request (cancel) or a check, before it reports it unavailable.")
    pin_node_id: str = Field(
        "", description="Run every saga_actors actor on this Ray node (hex id). The runtime "
        "sets it on a multi-node cluster while files of its live on one node's disk (the "
        "participants' SQLite stores, an SQLite journal): the node of the driver that holds "
        "them. Empty: Ray places actors anywhere.")
    saga_max_restarts: int = Field(2, ge=0, description="Ray's own restarts of a saga actor.")
    restart_budget: int = Field(5, ge=0, description="Supervisor restarts before STUCK.")
    supervisor_tick_s: float = Field(0.5, gt=0, description="Supervisor check interval.")
    stall_grace_s: float = Field(
        10.0, gt=0, description="Quiet time tolerated past a step's limits.")
    registry_resync_s: float = Field(5.0, gt=0, description="Registry catch-up from the journal.")
    metrics_interval_s: float = Field(5.0, gt=0, description="Gauge refresh (Ray drops >30 s).")
    saga_linger_s: float = Field(
        1.5, ge=0, description="A finished saga actor waits this long before it exits, so Ray "
        "reports its last step tasks to the dashboard (it flushes task events about every 1 s)."
    )

    crash_points: tuple[str, ...] = Field(
        (), description="Fault injection for tests and drills: the process running a saga "
        "exits once per saga at each `<step>:<action|compensation>:<sent|replied>` listed "
        "(`sent`: journaled, not yet called; `replied`: the participant answered, not yet "
        "journaled). Never set in production.",
    )

    @field_validator("store_url")
    @classmethod
    def _store_url(cls, value: str) -> str:
        if value and not is_postgres(value):
            raise ValueError("must be empty (SQLite files in data_dir) or a "
                             "postgresql://user@host:port/db URL")
        return value

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: str) -> str:
        # Actors run in other working directories: pin relative paths now.
        return str(Path(value).expanduser().resolve())

    @classmethod
    def load(cls, **overrides: Any) -> RuntimeConfig:
        """Defaults, then ``SAGA_ACTORS_<FIELD>`` variables, then ``overrides`` (None:
        not given). Raises :class:`ConfigError` for an unknown setting or a bad value."""
        given = {k: v for k, v in overrides.items() if v is not None}
        try:
            return cls(**given)
        except ValidationError as exc:
            err = exc.errors()[0]
            name = str(err["loc"][0]) if err["loc"] else "?"
            if err["type"] == "extra_forbidden":
                raise ConfigError(name, given.get(name), "argument",
                                  f"no such setting (known: {', '.join(cls.model_fields)})"
                                  ) from None
            env = f"{ENV_PREFIX}{name.upper()}"
            source = "argument" if name in given else (env if env in os.environ else "default")
            value = given.get(name, os.environ.get(env))
            raise ConfigError(name, value, source, err["msg"]) from None

    @property
    def journal(self) -> str:
        """The journal URL in effect."""
        return self.journal_url or f"sqlite:///{Path(self.data_dir) / 'journal.sqlite'}"

    def participant_store(self, name: str) -> str:
        """The store of participant ``name``: its SQLite file, or its PostgreSQL schema."""
        if self.store_url:
            return participant_store_url(self.store_url, name)
        return str(Path(self.data_dir) / "participants" / f"{name}.sqlite")
