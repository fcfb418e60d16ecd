"""Fake vendor servers for the tests, on 127.0.0.1 only (aiohttp), with faults on demand."""

from . import octoai, photio, picpik, piktid
from .base import Fault, FakeVendor, serve
from .octoai import FakeOctoAI
from .photio import FakePhotio
from .picpik import FakePICPIK
from .piktid import FakePiktID

# Every fake's keys, as the environment a client reads them from (and no keys file).
ENV = {"REGION_REPAIR_PIKTID_KEY": piktid.TOKEN,
       "REGION_REPAIR_PICPIK_PUBLIC_KEY": picpik.PUBLIC_KEY,
       "REGION_REPAIR_PICPIK_PRIVATE_KEY": picpik.PRIVATE_KEY,
       "REGION_REPAIR_PHOTIO_KEY": photio.KEY,
       "REGION_REPAIR_OCTOAI_KEY": octoai.TOKEN,
       "REGION_REPAIR_KEYS_FILE": "/nonexistent/keys.toml"}

__all__ = ["ENV", "Fault", "FakeVendor", "serve", "FakeOctoAI", "FakePhotio", "FakePICPIK",
           "FakePiktID"]
