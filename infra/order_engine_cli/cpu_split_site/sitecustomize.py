"""Loaded by Python at start-up in the processes of a stack `order-engine lab
cpu-split` started (this folder is first on their PYTHONPATH): see cpu_split.py."""

from order_engine_cli.cpu_split import install_from_env

install_from_env()
