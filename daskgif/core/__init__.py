"""The retry/skip core: tasks with retries and a delay, a ``Skip`` signal, states, tasks that
launch tasks, and states as Dask events.

Generic: it knows no pipeline, no storage and no GIF.  ``task`` (:class:`Task`, :class:`Skip`),
``state`` (:class:`State` and the states of mapped tasks), ``retry`` (what is transient, the
retry policy), ``timeouts``, ``limits``, ``fanout`` (launching tasks from a task) and
``events`` (the ``daskgif`` topic).
"""
