"""What users touch: client SDK, CLI, demo (and later the HTTP API). Imports stream/ and model/."""
