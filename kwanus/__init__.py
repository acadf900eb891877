"""KWANUS Partner Governance: the core every layer may import — settings, the Temporal contract
(names, ids, search attributes, process types), the payload models that cross Temporal and the
one way to reach Temporal. The entry points that wire the layers live in `app/`."""
