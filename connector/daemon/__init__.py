"""The daemon: the shell around the engine (config, scheduler, signals, logging, health and metrics)."""
