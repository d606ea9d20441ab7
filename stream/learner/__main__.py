"""``python -m stream.learner``: the learner, configured from STREAMREC_* variables."""

from stream.config import Settings
from stream.learner.service import learner_main

learner_main(Settings())
