"""The long-lived services as plain classes: the supervisor, the registry, the saga host
(and where such actors go on a cluster, :mod:`.spread`). No Ray: :mod:`saga_actors.ray`
wraps each in a named actor."""
