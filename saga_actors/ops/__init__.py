"""What operators use: the ``saga-actors`` command (:mod:`.cli`), timeline pictures
(:mod:`.timeline`) and the Grafana dashboard (:mod:`.grafana`)."""
