"""First-party robustprune plugins, installed as ``robustprune_plugins``.

They register through entry points like any third-party plugin, and use only the public plugin API.
"""
