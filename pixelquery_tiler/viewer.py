"""Placeholder: filled in by its issue."""

from fastapi import FastAPI

from .warehouse import Warehouse


def add_viewer(app: FastAPI, warehouse: Warehouse) -> None:
    """Register this module's routes on ``app``."""
