"""Where Ray comes in, and the only package that imports it: one actor shell per kind
(:mod:`.actors`), participant calls (:mod:`.gateway`), the supervisor's hands
(:mod:`.fleet`), the registry feed (:mod:`.feed`), definitions in Ray's KV
(:mod:`.definitions`) and metrics (:mod:`.metrics`)."""
