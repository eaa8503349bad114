"""Exercises and grading: instant self-checks for learners, ``kdlab grade`` for instructors.

Learners call :func:`check` in an exercise notebook::

    from kdlab.grading import check
    check("00.accuracy", accuracy)     # prints "✓ 00.accuracy: passed 20 random cases"

Instructors run ``kdlab build-exercises`` (``solutions/`` -> ``exercises/``) and
``kdlab grade submissions/*.ipynb`` (see ``docs/grading.md``).

Adding a graded item to lesson NN
---------------------------------
1. Register it in ``kdlab/grading/items/lNN.py`` (create the file; it is found
   automatically) in the module-level list ``ITEMS``::

       import torch

       from kdlab.distill import soft_targets
       from kdlab.grading.registry import FunctionItem, NumberItem

       def on_probabilities(logits, temperature):    # the usual mistake
           return soft_targets(torch.softmax(logits, -1), temperature=temperature)

       ITEMS = [
           FunctionItem("02.soft_targets", points=2,
                        reference=soft_targets,                # kdlab's own function
                        inputs=lambda g: (torch.randn(4, 10, generator=g),
                                          0.5 + 8 * float(torch.rand(1, generator=g))),
                        wrong=[(on_probabilities, "T divides the logits, not the probabilities")]),
           NumberItem("02.best_temperature", target=measure, abs_tol=0.5),
       ]

   The id is ``"NN.name"``; ``name`` is what the learner's notebook defines.
   ``inputs`` draws one case with the generator it gets; the hints of ``wrong``
   describe the usual mistakes (see :mod:`kdlab.grading.registry` for
   :class:`NumberItem`, :class:`ChoiceItem` and :class:`SetItem`).

2. In ``solutions/NN_slug.ipynb`` write the answer cell and the test cell::

       # answer cell: metadata nbgrader = {"solution": true, "grade": false,
       #   "grade_id": "02-soft_targets-answer", "locked": false, "schema_version": 3}
       def soft_targets(logits, temperature):
           ### BEGIN SOLUTION
           ...the solution...
           ### END SOLUTION

       # test cell: metadata nbgrader = {"grade": true, "solution": false, "locked": true,
       #   "grade_id": "02-soft_targets", "points": 2, "schema_version": 3}
       check("02.soft_targets", soft_targets)
       ### BEGIN HIDDEN TESTS
       assert check("02.soft_targets", soft_targets)
       ### END HIDDEN TESTS

   :func:`kdlab.grading.build.nbgrader_metadata` makes both dicts. The test
   cell's ``grade_id`` is the item id with ``-`` for ``.`` and its ``points``
   are the item's. Then run ``kdlab build-exercises``, execute the solution
   (``scripts/execute_notebooks.py``) and run the tests.
"""
__all__ = ["check", "get", "all_items", "lesson_items", "Item", "FunctionItem", "NumberItem",
           "ChoiceItem", "SetItem", "Verdict"]


def __getattr__(name):
    # Imported on first use, so that ``kdlab --help`` and ``kdlab grade`` start without
    # loading torch and every graded item.
    if name in __all__:
        from kdlab.grading import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'kdlab.grading' has no attribute {name!r}")
