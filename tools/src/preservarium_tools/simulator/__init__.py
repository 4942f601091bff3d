"""Simulated devices that talk real CoAP to a gateway (`preservarium simulate`)."""
