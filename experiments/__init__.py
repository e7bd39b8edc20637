"""The project's command-line scripts: each parses its options and calls the package.

In a clone they run as ``python experiments/<name>.py``; ``pip install .`` installs this folder as
``hidden2stream_experiments`` with the ``hidden2stream`` command (:mod:`.command`) in front of it.
"""
