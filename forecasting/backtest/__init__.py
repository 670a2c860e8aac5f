"""Rolling-origin backtests: issue grid, engine, metrics, report (pure) and the output folder.

``grid`` (issue times, intervals, refit blocks), ``engine`` (demand backtest over any
:class:`models.base.Forecaster`), ``pv`` (the solar model), ``metrics``, ``report`` (HTML),
``contract`` (the output files and their checks), ``models`` (model names and factories) and
``outputs`` (writing the output folder: the package's only file I/O).
"""
