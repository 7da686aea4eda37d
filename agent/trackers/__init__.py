"""Bug trackers, one module each, behind :class:`~rp_bts_agent.trackers.base.Tracker`."""
