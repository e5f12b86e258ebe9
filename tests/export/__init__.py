"""Tests of the export stage (a package, so its conftest and helpers never shadow others)."""
