"""Answers → rich renderables. Returns, never prints."""
