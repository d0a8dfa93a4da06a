"""Pure decisions: utilization, assignability with hysteresis, scale plans, status rendering.

Nothing here does I/O or reads the clock: the current time is always an argument. That keeps
every decision reproducible in table-driven and property tests.
"""
