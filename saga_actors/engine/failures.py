"""How a step's call ended when it did not succeed, and the check of a step's output.
No Ray."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from saga_actors.model.definition import Step
from saga_actors.model.messages import encode_json
from saga_actors.model.validation import validation_brief

SIGNAL_ID = "__signal_id__"  # in a wait step's output: the signal it took (journaled apart)


class Failure:
    """Why a call (an orchestrated step's, or a choreographed reaction's) did not succeed:
    its error's type and message, whether retrying may help, whether its effect might have
    happened all the same, and whether it ran out of its reaction's deadline."""

    __slots__ = ("deadline", "error", "error_type", "park", "retryable", "uncertain")

    def __init__(self, error_type: str, error: str, *, retryable: bool,
                 uncertain: bool, park: bool = False, deadline: bool = False) -> None:
        self.error_type = error_type
        self.error = error
        self.retryable = retryable
        self.uncertain = uncertain
        self.park = park  # neither forward nor back is known to be right: STUCK
        self.deadline = deadline  # a reaction's deadline passed: its timeout event

    @classmethod
    def refused(cls, error_type: str, error: str, *, retryable: bool) -> Failure:
        """The participant answered with a failure: its effect did not happen."""
        return cls(error_type, f"{error_type}: {error}", retryable=retryable, uncertain=False)

    @classmethod
    def unknown(cls, exc: Exception) -> Failure:
        """No answer (a timeout, a lost actor): the effect may have happened; retryable."""
        return cls(type(exc).__name__, str(exc), retryable=True, uncertain=True)

    @classmethod
    def aborted(cls, error_type: str, reason: str, *, uncertain: bool) -> Failure:
        """A cancel or the deadline stopped the step (mid-call: ``uncertain``)."""
        return cls(error_type, reason, retryable=False, uncertain=uncertain)

    @classmethod
    def bad_output(cls, problem: str) -> Failure:
        """The participant applied its effect but answered with unusable output."""
        return cls("InvalidOutput", f"invalid output: {problem}", retryable=False,
                   uncertain=True)

    @classmethod
    def past_deadline(cls, error_type: str, error: str, *, uncertain: bool) -> Failure:
        """A reaction's deadline passed before the event it should lead to came."""
        return cls(error_type, error, retryable=False, uncertain=uncertain, deadline=True)

    def settled_not_applied(self) -> Failure:
        """The same failure, once the participant fenced the effect: it never happened."""
        return Failure(self.error_type, self.error, retryable=False, uncertain=False,
                       deadline=self.deadline)


def checked_output(step: Step, output: Any) -> dict[str, Any]:
    if not isinstance(output, dict):
        raise ValueError(f"expected a dict, got {type(output).__name__}")
    encode_json(output)  # as given (a model would turn NaN into null); NotJSONError
    if step.output_model is not None:
        try:
            output = step.output_model.model_validate(output).model_dump(mode="json")
        except ValidationError as exc:
            raise ValueError(validation_brief(exc)) from None
    return output



def compensation_order(completed: list[str], uncertain: list[str],
                       undoable: Callable[[str], bool]) -> list[str]:
    """What a failure undoes, and in which order: newest first, the steps (reactions) whose
    outcome is unknown, then the completed ones in reverse order of completion (parallel
    branches too, then what came before them). The one rule of orchestration's
    ``Parallel`` and a choreography's fan-out."""
    order = [*completed, *[s for s in uncertain if s not in completed]]
    return [name for name in reversed(order) if undoable(name)]
