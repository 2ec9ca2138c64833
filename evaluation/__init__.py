"""What a researcher reads after a run: metrics of the accuracy matrix, the results files, the printed table and
the loggers. Fed with plain numbers; it imports no agent, data or experiment code."""
