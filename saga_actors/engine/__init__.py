"""How a saga *runs*: the runner every saga shares (:mod:`.runner`), its two styles
(:mod:`.orchestration`, :mod:`.choreography`), child sagas and signals, admission,
transitions, restarts, and the catalog of definitions. No Ray."""
