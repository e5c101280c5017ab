"""What follows the log and answers predictions, by role: log, follow, serving, workers."""
