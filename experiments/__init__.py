"""Model comparisons: one rolling-origin backtest harness for every forecaster.

`python -m experiments --help` runs it; `experiments.backtest.run_backtest` is the
harness, `experiments.models` the forecasters, `experiments.metrics` the scoring and
`experiments.report` the markdown table and plot.
"""
