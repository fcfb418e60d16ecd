"""Fake vendor servers for the tests, on 127.0.0.1 only (aiohttp), with faults on demand."""

from .base import Fault, FakeVendor, serve
from .octoai import FakeOctoAI
from .photio import FakePhotio
from .picpik import FakePICPIK
from .piktid import FakePiktID

__all__ = ["Fault", "FakeVendor", "serve", "FakeOctoAI", "FakePhotio", "FakePICPIK",
           "FakePiktID"]
