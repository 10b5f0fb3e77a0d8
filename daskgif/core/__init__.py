"""The retry/skip core: tasks with retries and a delay, a ``Skip`` signal, states, tasks that launch tasks,
and the events channel.  Generic: it knows no pipeline, no storage and no GIF.

``task`` (:class:`Task`, :class:`Skip`), ``state`` (states, the run record), ``retry`` (the policy and
the loop), ``fanout`` (launching tasks from a task), ``events`` (the ``daskgif`` topic) and
``runtime`` (where code runs, and waiting there).
"""
