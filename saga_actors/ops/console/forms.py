"""The console's forms: the actions on a saga (each confirmed first, each carrying the
CSRF token), signing in, and the confirmation page for a browser without script."""

from __future__ import annotations

import json
from typing import Any

from saga_actors.ops.console.layout import e, quoted

ACTIONS = ("cancel", "retry", "resolve", "signal")


def actions(base: str, info: dict[str, Any], *, csrf: str, signed_in: bool,
            enabled: bool) -> str:
    """Cancel, retry, resolve with a note, and signal with a JSON payload."""
    if not enabled:
        return ('<section class="actions"><h2>Actions</h2><p class="empty">Actions are off: '
                "the console has no token.</p></section>")
    if not signed_in:
        return (f'<section class="actions"><h2>Actions</h2><p><a href="{e(base)}/login">'
                "Sign in</a> with the console's token to cancel, retry, resolve or signal."
                "</p></section>")
    saga_id = info["saga_id"]
    waits = info.get("signals_awaited") or [{}]
    signal_name = waits[0].get("signal") or ""

    def form(action: str, question: str, fields: str, label: str) -> str:
        return (f'<form class="action" data-action="{action}" method="post" '
                f'action="{e(base)}/act/{action}/{e(quoted(saga_id))}" '
                f'data-confirm="{e(question)}"><input type="hidden" name="csrf" '
                f'value="{e(csrf)}"><input type="hidden" name="confirm" value="">'
                f'{fields}<button type="submit">{e(label)}</button></form>')

    status = info["status"]
    if status in ("COMPLETED", "FAILED"):
        return (f'<section class="actions"><h2>Actions</h2><p class="empty">None: the saga '
                f"is {e(status)}.</p></section>")
    if status == "STUCK":  # what an operator does about a STUCK saga
        shown = (form("retry", f"Retry STUCK saga {saga_id}?", "", "Retry")
                 + form("resolve", f"Mark STUCK saga {saga_id} resolved? It ends FAILED.",
                        '<label>note <input name="note" required placeholder="what was done">'
                        "</label>", "Resolve"))
    else:
        shown = (form("cancel", f"Cancel saga {saga_id}? It compensates and ends FAILED.",
                      '<label>reason <input name="reason" value="cancelled by operator">'
                      "</label>", "Cancel")
                 + form("signal", f"Send this signal to saga {saga_id}?",
                        f'<label>signal <input name="name" required value="{e(signal_name)}">'
                        '</label><label>payload (JSON) <textarea name="data" rows="2" '
                        'cols="40">{}</textarea></label>', "Send signal"))
    return f'<section class="actions"><h2>Actions</h2>{shown}</section>'



def saga_input(base: str, saga_id: str, shown: dict[str, Any] | None,
               refusal: str | None) -> str:
    """The saga's input, on request only, secrets masked; or why it is not shown."""
    link = f'{e(base)}/sagas/{e(quoted(saga_id))}?input=1'
    if shown is None and refusal is None:
        return (f'<section class="input"><h2>Input</h2><p><a href="{link}" '
                'data-show-input>Show the input</a> (secret fields stay masked)</p></section>')
    if refusal is not None:
        return f'<section class="input"><h2>Input</h2><p class="error">{e(refusal)}</p></section>'
    return ('<section class="input"><h2>Input</h2><pre class="input-json">'
            f"{e(json.dumps(shown, indent=2))}</pre></section>")


def login(base: str, next_url: str, error: str | None, token_source: str) -> str:
    msg = f'<div class="flash error" role="alert">{e(error)}</div>' if error else ""
    return (f"<h1>Sign in</h1>{msg}"
            f'<form class="login" method="post" action="{e(base)}/login">'
            f'<input type="hidden" name="next" value="{e(next_url)}">'
            f'<label>token <input type="password" name="token" autocomplete="off" '
            f'required></label><button type="submit">Sign in</button></form>'
            f'<p class="hint">The token is {e(token_source)}.</p>')


def confirm(base: str, action: str, saga_id: str, fields: dict[str, str]) -> str:
    """Asked again when a form came without the page's script's confirmation."""
    hidden = "".join(f'<input type="hidden" name="{e(k)}" value="{e(v)}">'
                     for k, v in fields.items() if k != "confirm")
    return (f"<h1>Confirm</h1><p>{e(action)} saga <code>{e(saga_id)}</code>?</p>"
            f'<form method="post" action="{e(base)}/act/{e(action)}/{e(quoted(saga_id))}">'
            f'{hidden}<input type="hidden" name="confirm" value="yes">'
            f'<button type="submit">Yes, {e(action)}</button> '
            f'<a href="{e(base)}/sagas/{e(quoted(saga_id))}">No, back</a></form>')
