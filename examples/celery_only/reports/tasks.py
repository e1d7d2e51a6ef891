"""Three tasks: a quick summary, a slower render (about a second), an import that rejects bad input."""

import csv
import io
import time

from reports.celery_app import app


@app.task(name="reports.summarize")
def summarize(values: list[float]) -> dict[str, float]:
    """Totals of a small series (a fifth of a second of work)."""
    time.sleep(0.2)
    return {"count": len(values), "total": sum(values), "max": max(values, default=0)}


@app.task(name="reports.render")
def render(report_id: int, pages: int) -> str:
    """Render a report page by page (0.1 s a page)."""
    for _ in range(pages):
        time.sleep(0.1)
    return f"report-{report_id}.pdf ({pages} pages)"


@app.task(name="reports.import_rows")
def import_rows(text: str) -> int:
    """Import a CSV of numbers; a cell that is not a number is a ValueError (the task ends FAILURE)."""
    rows = list(csv.reader(io.StringIO(text)))
    for row in rows:
        for cell in row:
            float(cell)
    return len(rows)
