"""Command-line interface: `videollama SUBCOMMAND ...` (see main.py for the table)."""
