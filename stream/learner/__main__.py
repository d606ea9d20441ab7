"""``python -m stream.learner``: the learner, configured from STREAMREC_* variables."""

import logging

from stream.config import Settings
from stream.learner.service import run_learner

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s learner: %(message)s")
run_learner(Settings())
