"""What a saga *is*: definitions (orchestrated and choreographed), states, the events that
can happen to a saga, the records the journal keeps, the messages to participants, and the
shape a version pins. Data only: no Ray, no I/O."""
