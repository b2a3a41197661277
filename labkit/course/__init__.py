"""The course: exercises and their checks, grading a class, authoring the notebooks.

- ``checks``     the check machinery: ``Registry``, ``Wrong``/``expect``/``call``, results.
- ``exercises``  one module per notebook; ``exercises.load()`` builds the course's registry.
- ``broker_checks`` what a check asks the broker: a topic's records, a group's commits,
                 whether handed-in ``ConsumerRecord``s are really there.
- ``reset``      ``nb.reset(id)``: clear the topics and groups an exercise declares.
- ``grading``    ``labkit grade``: run submitted notebooks, collect results, write reports.
- ``authoring``  ``labkit notebooks build/check``: student versions from the masters.

Layering: ``course`` sits above the client and ``labkit.nb``'s helper modules (the
exercises use ``labkit.nb.generators``) and below the CLI. ``labkit.nb``'s facade
(``nb.check``) is the one place in ``nb`` that loads the course, lazily; no other ``nb``
module imports ``course``, so the two never form an import cycle (tests/unit/test_layers.py).
"""
