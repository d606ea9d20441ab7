"""``python -m stream.worker``: a worker configured from STREAMREC_* variables."""

from stream.config import Settings
from stream.worker.app import run_worker

run_worker(Settings())
