"""The worker process: runs untrusted parser code behind the hardening layers."""
