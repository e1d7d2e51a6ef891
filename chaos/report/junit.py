"""``junit.xml``: one testcase per scenario, each finding a failure, so any CI shows what broke."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from chaos.report.model import FindingEntry, Report


def render_junit(report: Report) -> str:
    scenarios = report.scenarios
    suite = ET.Element("testsuite", name=f"celery-chaos {report.profile or ''}".strip(),
                       tests=str(len(scenarios)),
                       failures=str(sum(1 for s in scenarios if s.verdict == "fail")),
                       errors=str(sum(1 for s in scenarios if s.verdict == "unknown")),
                       skipped=str(sum(1 for s in scenarios if s.verdict == "n/a")),
                       time=str(report.duration_s))
    for s in scenarios:
        case = ET.SubElement(suite, "testcase", classname=f"chaos.{report.target}", name=s.name,
                             time=str(s.duration_s))
        if s.verdict == "fail":
            first = s.findings[0] if s.findings else FindingEntry(checker="?", kind="?", message="violation")
            body = "\n".join(f"[{f.checker}/{f.kind}] {f.message} tasks={','.join(f.task_ids[:10])}"
                             for f in s.findings)
            if s.replay:
                body += f"\nreplay: {s.replay}"
            fail = ET.SubElement(case, "failure", type=f"{first.checker}/{first.kind}", message=first.message[:500])
            fail.text = body
        elif s.verdict == "n/a":
            ET.SubElement(case, "skipped", message="; ".join(s.reasons)[:500] or "not applicable")
        elif s.verdict == "unknown":
            err = ET.SubElement(case, "error", type="undecided", message="; ".join(s.errors)[:500]
                                or "a checker could not decide")
            err.text = "\n".join(s.errors)
        out = ET.SubElement(case, "system-out")
        out.text = f"history: {s.history}\nfaults: " + ", ".join(f"{f.name}({f.node})" for f in s.faults)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)


def write_junit(report: Report, path: Path) -> None:
    path.write_text(render_junit(report) + "\n")
