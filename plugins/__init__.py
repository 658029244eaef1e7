"""First-party robustprune plugins, installed as ``robustprune_plugins`` and registered through entry points like any third-party plugin."""
