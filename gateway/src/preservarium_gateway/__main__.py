"""`python -m preservarium_gateway`: the same as `preservarium-gateway`."""

from preservarium_gateway.main import main

main()
