"""``junit.xml``: one testcase per scenario, each finding a failure, so any CI shows what broke."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any


def render_junit(report: dict[str, Any]) -> str:
    scenarios = report.get("scenarios", [])
    suite = ET.Element("testsuite", name=f"celery-chaos {report.get('profile') or ''}".strip(),
                       tests=str(len(scenarios)),
                       failures=str(sum(1 for s in scenarios if s["verdict"] == "fail")),
                       errors=str(sum(1 for s in scenarios if s["verdict"] == "unknown")),
                       skipped=str(sum(1 for s in scenarios if s["verdict"] == "n/a")),
                       time=str(report.get("duration_s", 0)))
    for s in scenarios:
        case = ET.SubElement(suite, "testcase", classname=f"chaos.{report.get('target', 'target')}",
                             name=s["name"], time=str(s.get("duration_s", 0)))
        if s["verdict"] == "fail":
            findings = s.get("findings", [])
            first = findings[0] if findings else {"checker": "?", "kind": "?", "message": "violation"}
            body = "\n".join(f"[{f['checker']}/{f['kind']}] {f['message']} tasks={','.join(f['task_ids'][:10])}"
                             for f in findings)
            if s.get("replay"):
                body += f"\nreplay: {s['replay']}"
            fail = ET.SubElement(case, "failure", type=f"{first['checker']}/{first['kind']}",
                                 message=first["message"][:500])
            fail.text = body
        elif s["verdict"] == "n/a":
            ET.SubElement(case, "skipped", message="; ".join(s.get("reasons", []))[:500] or "not applicable")
        elif s["verdict"] == "unknown":
            err = ET.SubElement(case, "error", type="undecided", message="; ".join(s.get("errors", []))[:500]
                                or "a checker could not decide")
            err.text = "\n".join(s.get("errors", []))
        out = ET.SubElement(case, "system-out")
        out.text = f"history: {s.get('history')}\nfaults: " + ", ".join(
            f"{f['name']}({f['node']})" for f in s.get("faults", []))
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)


def write_junit(report: dict[str, Any], path: Path) -> None:
    path.write_text(render_junit(report) + "\n")
