"""The sweep: Ray Tune runs the trials, Optuna proposes them (see driver.py)."""
