"""Experiments around the library: the evaluation suite (suite.py -> record.py -> report.py, plot.py) and
the ablations (ablations.py). They live outside ``fusionlog/``: the library never prints and never
reads a target's labels except through its evaluator (``fusionlog.evaluate``)."""
