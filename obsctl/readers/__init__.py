"""Bytes → records: one log line at a time, whatever shape wrote it. Pure, no I/O."""
