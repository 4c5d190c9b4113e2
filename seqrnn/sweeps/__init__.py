"""Many runs: recipe searches, reports over run dirs, and the study's plan and shipping.

- :mod:`~seqrnn.sweeps.search`: Optuna studies of training recipes;
- :mod:`~seqrnn.sweeps.report`: tables, CSV and validation curves of many runs;
- :mod:`~seqrnn.sweeps.study`: which runs the whole study trains, how, and what it ships.
"""
