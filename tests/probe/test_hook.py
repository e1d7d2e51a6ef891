"""The hook in a real interpreter: loaded by ``site`` from PYTHONPATH, inert without its variable, chaining to the
``sitecustomize`` it shadows, waiting for the app's own ``import celery.signals``, and never raising."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from chaos.probe import DIR_ENV, NODE_ENV, install_hook, read_executions, read_records, worker_env

PROBE_SOURCES = [Path(__file__).resolve().parents[2] / "chaos" / "probe" / n
                 for n in ("celery_chaos_probe.py", "sitecustomize_hook.py")]


@pytest.fixture()
def hook(tmp_path: Path) -> Path:
    return install_hook(tmp_path / "hook")


def run(code: str, env: dict[str, str], python: str = sys.executable) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in (DIR_ENV, NODE_ENV, "PYTHONPATH")}
    out = subprocess.run([python, "-c", textwrap.dedent(code)], env={**clean, **env}, capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert "Error in sitecustomize" not in out.stderr, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def shadowed_site(tmp_path: Path) -> Path:
    """Another sitecustomize later on the path (Debian's, a venv's): it must still run."""
    d = tmp_path / "theirs"
    d.mkdir()
    (d / "sitecustomize.py").write_text("import os\nos.environ['THEIR_SITECUSTOMIZE'] = 'ran'\nMARK = 42\n")
    return d


SHOW = """
    import json, os, sys
    print(json.dumps({"probe": "celery_chaos_probe" in sys.modules, "celery": "celery" in sys.modules,
                      "path": [p for p in sys.path if "hook" in p and "__editable__" not in p], "theirs": os.environ.get("THEIR_SITECUSTOMIZE"),
                      "site_mark": getattr(sys.modules.get("sitecustomize"), "MARK", None),
                      "finders": [type(f).__name__ for f in sys.meta_path]}))
"""


def test_inert_without_its_variable_but_still_chains(tmp_path: Path, hook: Path) -> None:
    theirs = shadowed_site(tmp_path)
    got = run(SHOW, {"PYTHONPATH": f"{hook}{os.pathsep}{theirs}"})
    assert got == {"probe": False, "celery": False, "path": [], "theirs": "ran", "site_mark": 42,
                   "finders": [f for f in got["finders"] if f != "_Finder"]}


def test_active_it_imports_no_celery_and_leaves_sys_path_alone(tmp_path: Path, hook: Path) -> None:
    theirs = shadowed_site(tmp_path)
    env = worker_env("worker-0", str(hook), str(tmp_path / "records"), str(theirs))
    assert env["PYTHONPATH"] == f"{hook}{os.pathsep}{theirs}"
    got = run(SHOW, env)
    assert got["probe"] and not got["celery"] and got["path"] == [] and got["theirs"] == "ran"
    assert got["site_mark"] == 42 and got["finders"][0] == "_Finder"
    assert not (tmp_path / "records").exists()  # nothing recorded, no file made, until a signal fires


def test_signals_are_recorded_once_celery_signals_is_imported(tmp_path: Path, hook: Path) -> None:
    pytest.importorskip("celery")
    records = tmp_path / "records"
    code = """
        import json, os, sys
        import celery.signals as s
        from celery.utils.dispatch.signal import Signal

        class Req:
            id = "t-1"; hostname = "worker-0@box"; retries = 0; delivery_info = {"redelivered": False}
            @property
            def eta(self):
                raise RuntimeError("a property that raises is no reason to fail")

        class Task:
            name = "app.work"; request = Req()

        responses = []
        responses += s.worker_ready.send(sender=type("C", (), {"hostname": "worker-0@box"})())
        responses += s.task_received.send(sender=None, request=Req())
        responses += s.task_prerun.send(sender=Task(), task_id="t-1", task=Task(), args=(), kwargs={})
        pid = os.fork()
        if pid == 0:  # a pool child gets a file of its own
            s.task_failure.send(sender=Task(), task_id="t-1", exception=KeyError("k"), args=(), kwargs={},
                                traceback=None, einfo=None)
            os._exit(0)
        os.waitpid(pid, 0)
        responses += s.task_postrun.send(sender=Task(), task_id="t-1", task=Task(), args=(), kwargs={},
                                         retval=None, state="SUCCESS")
        ours = [r for r in responses if "celery_chaos" in getattr(r[0], "__name__", "")]
        print(json.dumps({"ours": len(ours), "errors": [repr(r[1]) for r in responses if isinstance(r[1], BaseException)],
                          "child": pid, "finder_left": any(type(f).__name__ == "_Finder" for f in sys.meta_path)}))
    """
    got = run(code, worker_env("worker-0", str(hook), str(records)))
    assert got["ours"] == 4 and got["errors"] == [] and not got["finder_left"]
    files = sorted(p.name for p in records.iterdir())
    assert len(files) == 2 and f"worker-0-{got['child']}.jsonl" in files
    result = read_executions(records, include_records=True)
    events = [r["event"] for r in result["records"]]
    assert events == ["worker_ready", "task_received", "task_prerun", "task_failure", "task_postrun"]
    failure = next(r for r in result["records"] if r["event"] == "task_failure")
    assert failure["pid"] == got["child"] and failure["exc"] == "KeyError" and failure["node"] == "worker-0"
    received = result["records"][1]
    assert received["task_id"] == "t-1" and received["hostname"] == "worker-0@box" and "eta" not in received


def test_a_reused_pid_appends_after_a_torn_line(tmp_path: Path, hook: Path) -> None:
    pytest.importorskip("celery")
    records = tmp_path / "records"
    code = f"""
        import json, os
        os.makedirs({str(records)!r})
        with open(os.path.join({str(records)!r}, f"worker-0-{{os.getpid()}}.jsonl"), "w") as fh:
            fh.write('{{"v":1,"event":"task_prerun","t":1.0,"seq":1}}\\n{{"v":1,"event":"task_pre')  # died here
        import celery.signals as s
        s.worker_ready.send(sender=None)
        print(json.dumps({{}}))
    """
    run(code, worker_env("worker-0", str(hook), str(records)))
    (path,) = records.iterdir()
    lines = path.read_text().split("\n")
    assert lines[1] == '{"v":1,"event":"task_pre' and json.loads(lines[2])["event"] == "worker_ready"
    probe = read_records(records)
    assert [r["event"] for r in probe.records] == ["task_prerun", "worker_ready"] and len(probe.streams) == 2
    assert len(probe.warnings) == 1


def test_an_unwritable_records_dir_writes_nothing_and_raises_nothing(tmp_path: Path, hook: Path) -> None:
    pytest.importorskip("celery")
    blocker = tmp_path / "records"
    blocker.write_text("a file where the directory should be")
    code = """
        import json
        import celery.signals as s
        r = s.worker_ready.send(sender=None)
        print(json.dumps({"errors": [repr(x[1]) for x in r if isinstance(x[1], BaseException)], "n": len(r)}))
    """
    got = run(code, worker_env("worker-0", str(hook), str(blocker)))
    assert got == {"errors": [], "n": 1}


@pytest.mark.parametrize("version", ["3.8", "3.9", "3.10", "3.12", "3.13"])
def test_the_probe_is_valid_python_from_3_8(version: str, tmp_path: Path, hook: Path) -> None:
    candidates = [str(p) for p in sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"))]
    candidates += [p for p in [shutil.which(f"python{version}")] if p]
    python = next((p for p in candidates if subprocess.run([p, "-c", "pass"], capture_output=True,
                                                           timeout=60).returncode == 0), None)
    if python is None:
        pytest.skip(f"no working python{version} here")
    for src in PROBE_SOURCES:
        subprocess.run([python, "-c", f"import ast; ast.parse(open({str(src)!r}).read())"], check=True, timeout=60)
    # and it runs there: active, without Celery installed (nothing happens, nothing breaks)
    theirs = shadowed_site(tmp_path)
    got = run(SHOW, worker_env("worker-0", str(hook), str(tmp_path / "records"), str(theirs)), python=python)
    assert got["probe"] and got["theirs"] == "ran" and got["path"] == []
