"""Readers for other tools' configuration files."""
