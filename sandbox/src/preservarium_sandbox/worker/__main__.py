"""`python -m preservarium_sandbox.worker`."""

from preservarium_sandbox.worker.main import main

main()
