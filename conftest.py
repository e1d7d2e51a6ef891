"""Load the celery-chaos pytest plugin for this repository's own tests when it is not installed.

Installed (``pip install -e .``), the plugin comes through its ``pytest11`` entry point (``celery_chaos``) and
registering it again would be an error; a bare checkout (``PYTHONPATH=. pytest``, or plugin autoload off) gets
it from here. ``-p no:celery_chaos`` still turns it off.
"""

from __future__ import annotations

import pytest

PLUGIN, ENTRY_POINT = "chaos.pytest_plugin", "celery_chaos"


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Called as this conftest registers, early enough for the plugin's options and before any test runs."""
    if pluginmanager.is_blocked(ENTRY_POINT) or pluginmanager.has_plugin(ENTRY_POINT):
        return
    pluginmanager.import_plugin(PLUGIN)
