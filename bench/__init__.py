"""`make bench`: the whole path measured against a bare CoAP server, in one run."""
