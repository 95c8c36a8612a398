"""hammer's sandbox: the job image (Dockerfile, build.py) and the runner inside it (runner/)."""
