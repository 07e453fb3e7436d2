"""Kanaria tests."""
