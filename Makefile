# Entry points named in the README. Each target is a thin wrapper over a script, so the commands
# also work without make.
.PHONY: demo demo-keep demo-stop test bench stack-start stack-stop

demo:
	bash scripts/demo.sh

demo-keep:
	bash scripts/demo.sh --keep

demo-stop:
	bash scripts/demo.sh --stop

test:
	bash scripts/test.sh

bench:
	bash scripts/bench.sh

stack-start:
	bash local/install.sh && .venv/bin/python local/stack.py start

stack-stop:
	.venv/bin/python local/stack.py stop
