# The two commands of the README.
.PHONY: demo test setup lint bench

demo:  ## set up everything, then run hammer on its embedded defaults (http://127.0.0.1:8080/)
	bash scripts/setup.sh
	hammer serve

test:  ## set up what the tests need, then run every test tier
	bash scripts/setup.sh --test
	python3 -m pytest -q -p no:cacheprovider

lint:
	ruff check .

bench:
	python3 bench/launch_overhead.py
