# Entry points named in the README. Each target is a thin wrapper over a script, so the commands
# also work without make.
.PHONY: demo test bench stack-start stack-stop

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

bench:
	bash scripts/bench.sh

stack-start:
	bash local/install.sh && .venv/bin/python local/stack.py start

stack-stop:
	.venv/bin/python local/stack.py stop
