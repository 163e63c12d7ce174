"""Numbered SQL migrations, applied in order by order_engine.migrate."""
