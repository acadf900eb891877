"""Every side effect of the workflows: database, notifications, validation probes, monitoring."""
