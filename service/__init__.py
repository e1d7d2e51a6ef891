"""data-sync: the reference system under test for the chaos framework.

A FastAPI API hands file-sync work to Celery workers over Redis; the ground
truth (task states, executions, effects) lives in a SQL database so it
survives any broker or worker fault.  See service/README.md.
"""
