"""A sweep: Ray Tune runs the trials, Optuna proposes them, rows record them.

    space.py       Space, Param: a validated search space (define-by-run ``suggest``)
    space_file.py  a search-space YAML file -> Space, every problem one line
    space_params.py  its ``search:`` section: each searched key's distribution and condition
    samplers.py    Optuna samplers by name; the ``sampler:`` section (SamplerSpec)
    baseline.py    the baseline trial's keys (docs/method.md part 4)
    ladder.py      prune ladders: sibling trials pending in the study, released when trained
    cost.py        what a sweep costs in epochs, with and without shared dense training
    cluster.py     Ray: a private local Ray on loopback with its own token, or a cluster joined
    sink.py        trial files from nodes that share no disk with the driver
    records.py     the sweep folder: sweep.json, the lock, rows read back, names
    reconcile.py   the rules that keep rows, the Optuna study and Tune's state one
    searcher.py    Optuna behind Tune (OptunaSearch plus those rules)
    worker.py      one trial inside a Ray worker, its report and checkpoints
    progress.py    the driver's callback: failed rows, trackers, checkpoints, progress lines
    tuner.py       the Tuner, restored or made afresh
    summary.py     the lines printed at a sweep's end
    driver.py      run_sweep
"""
