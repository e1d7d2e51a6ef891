"""celery-chaos probe hook, copied as ``sitecustomize.py`` into a directory first on a worker's PYTHONPATH.

Python's ``site`` module imports ``sitecustomize`` at start-up, so the worker's command needs no change. When
``CELERY_CHAOS_PROBE_DIR`` is set this loads ``celery_chaos_probe`` (next to this file); either way it then leaves
sys.path as it found it and runs the ``sitecustomize`` this file shadows (Debian's, a venv's), as ``site`` would
have. Stdlib only, Python 3.8+; nothing here may raise.
"""

import os as _os
import sys as _sys


def _celery_chaos_boot():
    here = _os.path.dirname(_os.path.abspath(__file__))

    def ours(entry):
        try:
            return _os.path.abspath(entry or _os.curdir) == here or _os.path.samefile(entry or _os.curdir, here)
        except OSError:
            return False

    try:
        if _os.environ.get("CELERY_CHAOS_PROBE_DIR"):
            import celery_chaos_probe

            celery_chaos_probe.install()
    except Exception:  # noqa: BLE001 - the probe never breaks the process
        pass
    _sys.path[:] = [p for p in _sys.path if not ours(p)]  # the app sees the path it would have seen
    try:
        import importlib.machinery
        import importlib.util

        spec = importlib.machinery.PathFinder.find_spec("sitecustomize", list(_sys.path))
        if spec is None or spec.loader is None or ours(_os.path.dirname(spec.origin or "")):
            return
        module = importlib.util.module_from_spec(spec)
    except Exception:  # noqa: BLE001
        return
    mine = _sys.modules.get("sitecustomize")
    _sys.modules["sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - what site.execsitecustomize says for a broken sitecustomize
        if mine is not None:
            _sys.modules["sitecustomize"] = mine
        if _sys.flags.verbose:
            _sys.excepthook(*_sys.exc_info())
        else:
            _sys.stderr.write(
                "Error in sitecustomize; set PYTHONVERBOSE for traceback:\n"
                f"{type(exc).__name__}: {exc}\n")


if __name__ == "sitecustomize":  # imported as chaos.probe.sitecustomize_hook (the framework's copy): nothing
    _celery_chaos_boot()
del _celery_chaos_boot
