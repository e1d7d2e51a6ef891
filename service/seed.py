"""Demo data (files 1-4), idempotent and safe when several APIs start at once.

The demo files are shared seeds (no owner): every caller may read and sync them, so the chaos workload
(token ``chaos-token``), the smoke script and the tests all use the same ids. Uploaded files belong to
their caller only.

File 1 = 5 rows (the original plan's ``file_id: 1``), 2 = 25 rows,
3 = 100 rows, 4 = 8 rows whose row 4 is poison (deterministic FAILURE).
Run by hand with ``python -m service.seed``.
"""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from .db import get_engine, write_tx
from .files import POISON_MARKER, get_file, store_file


def _rows(n: int, poison_row: int | None = None) -> list[dict[str, str]]:
    return [{"id": str(i), "name": f"customer-{i}",
             "email": POISON_MARKER if i == poison_row else f"customer{i}@example.com"}
            for i in range(1, n + 1)]


DEMO = {
    1: ("demo-5-rows.csv", _rows(5)),
    2: ("demo-25-rows.csv", _rows(25)),
    3: ("demo-100-rows.csv", _rows(100)),
    4: ("demo-poison-row-4.csv", _rows(8, poison_row=4)),
}


def seed_demo() -> list[int]:
    """Create the demo files that don't exist yet; returns the ids created by this call."""
    created = []
    for fid, (name, rows) in DEMO.items():
        if get_file(fid) is not None:
            continue
        try:
            store_file(name, rows, owner=None, file_id=fid)  # shared: every caller may read and sync it
            created.append(fid)
        except IntegrityError:
            pass  # another process seeded it concurrently
    if get_engine().dialect.name == "postgresql":  # explicit ids don't advance the sequence
        with write_tx() as c:
            c.execute(text("SELECT setval(pg_get_serial_sequence('files', 'id'), "
                           "GREATEST((SELECT MAX(id) FROM files), 1))"))
    return created


def main() -> None:
    created = seed_demo()
    print(f"demo files created: {created or 'none (already present)'}")


if __name__ == "__main__":
    main()
