"""posttrain ui: a local web page over run directories, to watch runs as they train.

It reads what pipelines already write (posttrain/runs/watch.py), so a run started from a terminal shows up as
well, and it needs no database.
"""
