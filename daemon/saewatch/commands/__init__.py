"""The commands behind ``saewatch <command>``, grouped by what they run; :mod:`saewatch.cli`
registers them. Each is a thin function ``(args, settings) -> exit status``."""
