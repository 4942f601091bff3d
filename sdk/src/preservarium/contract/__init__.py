"""The connector's contract with the outside world, in one vocabulary: the Kafka topics
and their records (`topics`, `encoding`, `uplinks`, `status`, `command_requests`), the
error kinds (`kinds`) and the device contact (`contact`). The gateway, the sandbox, the
CLI and the replay all speak it; docs/records.md describes it for users.

Each module is one topic family or one value; nothing here does I/O.
"""
