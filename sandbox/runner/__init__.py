"""The sandbox runner: the program every job container runs (`python3 -m sandbox.runner`).

It reads /workspace/job.json, runs ms-swift from the job's argv and reports everything as
JSON event lines on stdout. It imports nothing from gateway/, adapters/ or plugins/ (they
are not in the image) and no third-party package at module import time, so its startup
is fast and its first event arrives within a fraction of a second.
"""
