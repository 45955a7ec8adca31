#!/usr/bin/env python3
"""Command-line entry point: ``python cli.py --help``."""

from connector.cli import main

if __name__ == "__main__":
    main()
