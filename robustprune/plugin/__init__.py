"""The plugin contract and the toolkit plugins use.

``hookspecs`` (the hooks and the ``hookimpl`` marker) and ``api`` (what
plugins register and receive) are the contract; ``host`` loads plugins and
``registry`` resolves the names they register. ``masks``, ``channels``,
``allocation``, ``sensitivity`` and ``datafiles`` are the toolkit that prune
methods and dataset plugins build on. Nothing here imports the rest of
robustprune: plugins depend on this package, and this package on nothing.

Importing this package imports nothing else; import the modules you need.
"""
