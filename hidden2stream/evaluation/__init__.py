"""Scoring and reporting: flow (:mod:`.flow`), actions (:mod:`.actions`), their tables and pictures
(:mod:`.report`)."""
