"""Event families: per family its stage, accumulator, window summaries and merger factory,
built on `expmon.engine`."""
