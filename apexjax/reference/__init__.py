"""Independent reference implementations: oracles that tests and benchmarks check apexjax
against, never used by the library's own planner or training.

:mod:`apexjax.reference.numpy_icem` is the iCEM algorithm as the authors' NumPy code runs
it, on native MuJoCo with NumPy twins of the task costs, written apart from
:mod:`apexjax.planning.icem` (it imports no JAX): the tests compare the two step by step
(tests/test_numpy_icem.py), and ``apexjax bench`` and ``benchmarks/planner_vs_numpy.py``
time apexjax's planner against it at equal budget.
"""
