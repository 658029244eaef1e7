"""What a suite declares and what its checks read, without torch.

``suite`` (and the settings in ``beyond`` and ``gate``), ``shifts`` (the
``name@param`` spelling), ``results`` (case keys, curves, measures),
``metrics`` (pure functions over curves), ``gate`` (the deploy gate's
verdict), ``cases`` (the views checks receive) and ``datasource`` (where a
suite's data lives). pytest imports this package at start-up, so it must stay
free of torch and numpy; ``tests/test_architecture.py`` checks that.
"""
