"""Saga definitions as data: :class:`Saga`, :class:`Step`, :class:`StepKind`,
:class:`RetryPolicy`, and the step shapes beyond a participant call: :class:`Parallel`
(steps run at once), :func:`Child` (a step that runs another saga) and :func:`Wait` (a step
that waits for an outside signal).

Pure data, no Ray. A malformed definition raises :class:`SagaDefinitionError` when it is
built, never later while a saga runs.
"""

from __future__ import annotations

import enum
import random
import sys
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from saga_actors.errors import SagaDefinitionError

Placement = Literal["dedicated", "hosted"]


class StepKind(str, enum.Enum):
    """Where a step stands relative to the point of no return (Garcia-Molina & Salem)."""

    COMPENSATABLE = "compensatable"
    """Has a compensation; undone when a later step fails for good."""
    PIVOT = "pivot"
    """The point of no return: once it succeeds the saga can only go forward."""
    RETRIABLE = "retriable"
    """After the pivot: retried until it succeeds, never compensated."""


class _Data(BaseModel):
    """Frozen, strict data whose validation errors become :class:`SagaDefinitionError`."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            label = data.get("name") or type(self).__name__
            raise SagaDefinitionError(str(label), _brief(exc)) from None


def _brief(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "definition"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


class RetryPolicy(_Data):
    """How often and how patiently a participant call is retried."""

    max_attempts: int = Field(3, ge=1, description="Attempts in all, the first included.")
    initial_backoff_s: float = Field(0.05, ge=0, description="Wait before the 2nd attempt.")
    backoff_multiplier: float = Field(2.0, ge=1, description="Growth of the wait per attempt.")
    max_backoff_s: float = Field(5.0, ge=0, description="Upper bound of any single wait.")
    jitter: float = Field(0.2, ge=0, le=1, description="Wait is scaled by 1 ± jitter at random.")
    non_retryable: tuple[str, ...] = Field(
        (), description="Exception type names that fail the step at once."
    )

    @model_validator(mode="after")
    def _bounds(self) -> RetryPolicy:
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError("max_backoff_s must be >= initial_backoff_s")
        return self

    def backoff_s(self, failed_attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after attempt number ``failed_attempt`` (1-based) failed."""
        if failed_attempt < 1:
            raise ValueError("failed_attempt is 1-based")
        base = self.initial_backoff_s * self.backoff_multiplier ** (failed_attempt - 1)
        base = min(base, self.max_backoff_s)
        if self.jitter and rng is not None:
            base *= 1 + self.jitter * (2 * rng.random() - 1)
        return min(max(base, 0.0), self.max_backoff_s)

    def is_retryable(self, error_type: str, retryable_flag: bool = True) -> bool:
        """Whether a failure of this type may be retried at all."""
        return retryable_flag and error_type not in self.non_retryable


class Step(_Data):
    """One step: an action on a participant, and the compensation that undoes it."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Unique in its saga.")
    participant: str = Field("", description="Name of the participant actor (none for a "
                             "child or a wait step).")
    action: str = Field("", description="Participant method to call; defaults to `name`.")
    compensation: str | None = Field(None, description="Participant method that undoes it.")
    kind: StepKind = Field(StepKind.COMPENSATABLE, description="Compensatable, pivot or retriable.")
    timeout_s: float = Field(10.0, gt=0, description="Per attempt; the call is cancelled past it.")
    retry: RetryPolicy = Field(default_factory=RetryPolicy, description="For the action.")
    compensation_retry: RetryPolicy = Field(
        default_factory=lambda: RetryPolicy(max_attempts=5),
        description="For the compensation; past it the saga is STUCK.",
    )
    output_model: type[BaseModel] | None = Field(
        None, description="Validates the action's output (a wait step: the signal's "
        "payload) before it is merged."
    )
    child: str | None = Field(None, description="A child step: the saga type it runs (see "
                              ":func:`Child`).")
    signal: str | None = Field(None, description="A wait step: the signal it waits for (see "
                               ":func:`Wait`).")
    group: str | None = Field(None, description="The parallel group it runs in (set by "
                              ":class:`Parallel`).")

    @model_validator(mode="before")
    @classmethod
    def _by_reference(cls, data: Any) -> Any:
        """``action=Payment.charge, compensation=Payment.refund``: the methods' names, the
        participant (and the step name, if not given) from the class; checked here."""
        if not isinstance(data, dict) or not (callable(data.get("action"))
                                              or callable(data.get("compensation"))):
            return data
        data = dict(data)
        owners = set()
        for field, role in (("action", "action"), ("compensation", "compensation")):
            fn = data.get(field)
            if not callable(fn):
                continue
            marked = getattr(fn, "__saga_role__", None)
            if not marked or marked[0] != role:
                raise ValueError(f"{field}={_qualname(fn)} is not marked @{role}")
            if role == "compensation":
                action = data.get("action") or data.get("name")
                target = getattr(action, "__name__", action)
                if target and marked[1] != target:
                    raise ValueError(f"{_qualname(fn)} compensates {marked[1]!r}, not "
                                     f"{target!r}")
            data[field] = fn.__name__
            owners.add(_participant_of(fn))
        owners.discard(None)
        if len(owners) > 1:
            raise ValueError(f"action and compensation belong to different participants: "
                             f"{sorted(owners)}")
        if owners:
            owner = owners.pop()
            if data.get("participant") not in (None, owner):
                raise ValueError(f"the methods belong to participant {owner!r}, not "
                                 f"{data['participant']!r}")
            data["participant"] = owner
        data.setdefault("name", data.get("action"))
        return data

    def policy(self, phase: str) -> RetryPolicy:
        """The retry policy of the ``action`` or the ``compensation``."""
        return self.retry if phase == "action" else self.compensation_retry

    @property
    def undoable(self) -> bool:
        """Whether compensating the saga undoes this step (a wait has nothing to undo)."""
        return self.kind is StepKind.COMPENSATABLE and self.signal is None

    @model_validator(mode="after")
    def _shape(self) -> Step:
        targets = [t for t, v in (("participant", self.participant), ("child", self.child),
                                  ("signal", self.signal)) if v]
        if len(targets) != 1:
            raise ValueError(f"step {self.name!r} needs exactly one of participant, child "
                             f"(a child saga) or signal (a wait); it has "
                             f"{', '.join(targets) or 'none'}")
        if targets != ["participant"]:
            what = "a child step" if self.child else "a wait step"
            if self.kind is StepKind.PIVOT:
                raise ValueError(f"{what} cannot be the pivot ({self.name!r}): only a "
                                 "participant's action can be the point of no return")
            if self.compensation:
                raise ValueError(f"{what} has no compensation method ({self.name!r}): "
                                 + ("its child saga's compensations undo it" if self.child
                                    else "a signal has nothing to undo"))
            if self.signal and self.output_model is None:
                raise ValueError(f"wait step {self.name!r} needs its signal's payload "
                                 "model (output_model)")
            return self
        if not self.action:
            object.__setattr__(self, "action", self.name)
        if self.kind is StepKind.COMPENSATABLE and not self.compensation:
            raise ValueError(f"compensatable step {self.name!r} needs a compensation")
        if self.kind is not StepKind.COMPENSATABLE and self.compensation:
            raise ValueError(f"{self.kind.value} step {self.name!r} cannot have a compensation")
        return self


def _qualname(fn: Any) -> str:
    return getattr(fn, "__qualname__", repr(fn))


def _participant_of(fn: Any) -> str | None:
    """The participant name of the class a handler function is defined on (its ``name``,
    or the class name in lower case), if that class can be found."""
    owner_name, _, _ = getattr(fn, "__qualname__", "").rpartition(".")
    module = sys.modules.get(getattr(fn, "__module__", ""))
    owner = getattr(module, owner_name, None) if owner_name and "<" not in owner_name else None
    if owner is None:
        return None
    return getattr(owner, "name", "") or owner.__name__.lower()


class Parallel:
    """Steps that run at once, inside a saga's step list: ``Parallel(Step(...), Step(...))``.

    The group succeeds when every step in it succeeded. When one fails for good, the others
    still in flight are stopped and fenced; every step of the group that completed, or whose
    outcome is unknown, is compensated (newest first), then the steps before the group. A
    pivot cannot run in a group. ``name`` (default: the step names joined by ``+``) is what
    ``current_step`` shows while the group runs.
    """

    def __init__(self, *steps: Step, name: str | None = None) -> None:
        label = name or "+".join(getattr(s, "name", "?") for s in steps)
        if len(steps) < 2:
            raise SagaDefinitionError(label, "a parallel group needs at least two steps")
        for step in steps:
            if not isinstance(step, Step):
                raise SagaDefinitionError(label, f"a parallel group holds steps, not "
                                          f"{type(step).__name__} (groups do not nest)")
            if step.kind is StepKind.PIVOT:
                raise SagaDefinitionError(label, f"the pivot {step.name!r} cannot run in a "
                                          "parallel group: the point of no return is one step")
        self.name = label
        self.steps = tuple(s.model_copy(update={"group": label}) for s in steps)

    def __repr__(self) -> str:
        return f"Parallel({', '.join(s.name for s in self.steps)}, name={self.name!r})"


def Child(name: str, *, saga: Any, kind: StepKind = StepKind.COMPENSATABLE,  # noqa: N802
          timeout_s: float = 300.0, output_model: type[BaseModel] | None = None) -> Step:
    """A step that runs the saga type ``saga`` (its name or its :class:`Saga`) as a child.

    The child's id is ``<parent id>/<name>``; its input is the parent's data (the fields
    its input model declares); its ``COMPLETED`` output (what its steps output) is this
    step's output, its ``FAILED`` fails this step for good. When the parent compensates
    this step, the child's completed steps are compensated newest first. ``timeout_s``
    bounds how long the child may go without journaling progress before the supervisor
    counts the parent as stalled."""
    return Step(name=name, child=getattr(saga, "name", saga), kind=kind, timeout_s=timeout_s,
                output_model=output_model)


def Wait(name: str, *, payload: type[BaseModel], timeout_s: float,  # noqa: N802
         signal: str | None = None, kind: StepKind = StepKind.COMPENSATABLE) -> Step:
    """A step that waits, durably, for the outside signal ``signal`` (default: ``name``)
    sent with :meth:`SagaRuntime.signal` or ``saga-actors signal``. Its payload, checked
    against ``payload``, is the step's output. Past ``timeout_s`` the step fails for good
    and the saga compensates. A signal sent before the saga reaches the wait is kept."""
    return Step(name=name, signal=signal or name, output_model=payload, timeout_s=timeout_s,
                kind=kind, retry=RetryPolicy(max_attempts=1))


class Saga(_Data):
    """A saga type: a name, a version, an input model and its ordered steps."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$", description="The saga type.")
    version: int = Field(1, ge=1, description="Bumped when the steps change.")
    input_model: type[BaseModel] = Field(description="Validates the input of every saga.")
    steps: tuple[Step, ...] = Field(min_length=1, description="Run in this order (a "
                                    ":class:`Parallel` group's steps at once).")
    deadline_s: float | None = Field(None, gt=0, description="Whole-saga time limit.")
    placement: Placement = Field("dedicated", description="Default placement of instances.")

    @model_validator(mode="before")
    @classmethod
    def _flatten(cls, data: Any) -> Any:
        """A :class:`Parallel` in the step list becomes its steps, each marked with it."""
        if isinstance(data, dict) and isinstance(data.get("steps"), list | tuple):
            steps: list[Any] = []
            for item in data["steps"]:
                steps.extend(item.steps if isinstance(item, Parallel) else [item])
            data = {**data, "steps": tuple(steps)}
        return data

    @model_validator(mode="after")
    def _order(self) -> Saga:
        seen: set[str] = set()
        groups: list[str] = [s.group for s in self.steps if s.group]
        for group in dict.fromkeys(groups):
            at = [i for i, s in enumerate(self.steps) if s.group == group]
            if at != list(range(at[0], at[0] + len(at))) or len(at) < 2:
                raise ValueError(f"parallel group {group!r} must be two or more steps in a "
                                 "row (use Parallel)")
            if any(s.name == group for s in self.steps):
                raise ValueError(f"parallel group {group!r} has the name of a step")
        waits = [s.signal for s in self.steps if s.signal]
        if len(waits) != len(set(waits)):
            raise ValueError(f"two wait steps take the same signal: {sorted(waits)}; a "
                             "signal name says which wait it is for")
        pivot_at: int | None = None
        for i, step in enumerate(self.steps):
            if step.name in seen:
                raise ValueError(f"duplicate step name {step.name!r}")
            seen.add(step.name)
            if step.kind is StepKind.PIVOT:
                if pivot_at is not None:
                    raise ValueError(f"second pivot {step.name!r}: a saga has at most one")
                pivot_at = i
            elif step.kind is StepKind.COMPENSATABLE and pivot_at is not None:
                raise ValueError(
                    f"compensatable step {step.name!r} comes after the pivot "
                    f"{self.steps[pivot_at].name!r}; only retriable steps may follow it"
                )
            elif step.kind is StepKind.RETRIABLE and pivot_at is None:
                raise ValueError(f"retriable step {step.name!r} must come after a pivot")
        # outputs are merged into what later steps see (ctx.data): a clash would overwrite
        owner = {field: "the input" for field in self.input_model.model_fields}
        for step in self.steps:
            for field in step.output_model.model_fields if step.output_model else ():
                if field in owner:
                    raise ValueError(
                        f"step {step.name!r} outputs {field!r}, which {owner[field]} already "
                        "has: outputs are merged into ctx.data, so it would be overwritten")
                owner[field] = f"step {step.name!r}"
        return self

    def step(self, name: str) -> Step:
        """The step called ``name``."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    def group(self, name: str) -> tuple[Step, ...]:
        """The steps of the parallel group ``name`` (empty if there is none)."""
        return tuple(s for s in self.steps if s.group == name)

    def steps_at(self, cursor: int) -> tuple[Step, ...]:
        """What runs next from step index ``cursor``: one step, or a whole group."""
        step = self.steps[cursor]
        return self.group(step.group) if step.group else (step,)

    def signals(self) -> dict[str, Step]:
        """Signal name -> the wait step that takes it."""
        return {s.signal: s for s in self.steps if s.signal}

    def children(self) -> dict[str, Step]:
        """Child saga type -> the (first) step that runs it."""
        out: dict[str, Step] = {}
        for s in self.steps:
            if s.child:
                out.setdefault(s.child, s)
        return out

    def past_pivot(self, completed: Iterable[str]) -> bool:
        """Whether a pivot is among the ``completed`` steps: the saga can only go forward."""
        return any(self.step(name).kind is StepKind.PIVOT for name in completed)

    def roles(self) -> dict[str, set[tuple[str, str]]]:
        """Participant name -> (method, ``action`` or ``compensation``) it is called as."""
        out: dict[str, set[tuple[str, str]]] = {}
        for step in self.steps:
            if not step.participant:
                continue
            out.setdefault(step.participant, set()).add((step.action, "action"))
            if step.compensation:
                out[step.participant].add((step.compensation, "compensation"))
        return out

    @property
    def participants(self) -> dict[str, set[str]]:
        """Participant name -> the methods this saga calls on it."""
        out: dict[str, set[str]] = {}
        for step in self.steps:
            if not step.participant:
                continue
            methods = out.setdefault(step.participant, set())
            methods.add(step.action)
            if step.compensation:
                methods.add(step.compensation)
        return out
