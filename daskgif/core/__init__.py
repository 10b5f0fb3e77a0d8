"""The retry/skip core: ``task`` (:class:`Task`, :class:`Skip`), ``state``, ``retry`` (the policy and the loop),
``fanout`` (tasks launching tasks), ``events`` (the ``daskgif`` topic) and ``runtime`` (where code runs).
Generic: it knows no pipeline, no storage and no GIF."""
