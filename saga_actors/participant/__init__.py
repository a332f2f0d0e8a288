"""What a participant is: the base class users subclass (:mod:`.base`), its handler kinds
(:mod:`.handlers`), its store (:mod:`.stores`) and injected faults (:mod:`.faults`). No Ray:
:mod:`saga_actors.ray.actors` turns a participant class into a Ray actor."""
