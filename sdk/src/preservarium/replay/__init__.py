"""Replay: raw uplinks of a time window run again through a parser version.

The use case (`service`) is what the CLI and an API route call; `window` reads the time
arguments, `topics` finds and reads offsets by time, `originals` indexes what was
published at the time, `runners` asks the sandbox, `outcomes` builds the records and
the dry run's diffs, `pace` bounds the rate. Nothing here imports aiokafka on import of
the package: only the modules that read or write topics do.
"""

from preservarium.replay.errors import ReplayError

__all__ = ["ReplayError"]
