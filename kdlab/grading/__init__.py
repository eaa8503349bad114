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

       from kdlab.grading.registry import FunctionItem, NumberItem
       from kdlab.prune import magnitude_mask

       ITEMS = [
           FunctionItem("03.magnitude_mask", points=2,
                        reference=magnitude_mask,              # kdlab's own function
                        inputs=lambda g: (torch.randn(8, 8, generator=g),
                                          float(torch.rand(1, generator=g))),
                        wrong=[(usual_mistake, "the hint for that mistake")]),
           NumberItem("03.sparsity_at_1pt", target=measure, abs_tol=0.05),
       ]

   The id is ``"NN.name"``; ``name`` is what the learner's notebook defines.
   ``inputs`` draws one case with the generator it gets; the hints of ``wrong``
   describe the usual mistakes (see :mod:`kdlab.grading.registry` for
   :class:`NumberItem`, :class:`ChoiceItem` and :class:`SetItem`).

2. In ``solutions/NN_slug.ipynb`` write the answer cell and the test cell::

       # answer cell: metadata nbgrader = {"solution": true, "grade": false,
       #   "grade_id": "03-magnitude_mask-answer", "locked": false, "schema_version": 3}
       def magnitude_mask(weight, sparsity):
           ### BEGIN SOLUTION
           ...the solution...
           ### END SOLUTION

       # test cell: metadata nbgrader = {"grade": true, "solution": false, "locked": true,
       #   "grade_id": "03-magnitude_mask", "points": 2, "schema_version": 3}
       check("03.magnitude_mask", magnitude_mask)
       ### BEGIN HIDDEN TESTS
       assert check("03.magnitude_mask", magnitude_mask)
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
