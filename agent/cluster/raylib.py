"""Joining Ray: the one place Ray is imported and `ray.init` is called, with the node address kept as set.

Ray replaces a loopback address given to `ray.init` (address or `_node_ip_address`) with the machine's
interface address, unless its `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER` constant is false (read once, when Ray is
imported). On a loopback node address this module sets it to 0 before importing Ray, so a one-machine cluster
and its driver never leave 127.0.0.1; a LAN address is passed through unchanged.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from types import ModuleType

from agent.settings import Settings

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


class RayUnavailable(RuntimeError):
    """Cluster mode was asked for but Ray is not installed, or was imported too early to stay on loopback."""


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def import_ray(node_ip: str) -> ModuleType:
    """Import Ray so that a loopback `node_ip` stays loopback (see the module docstring)."""
    loaded = sys.modules.get("ray")
    if loaded is not None and loaded.is_initialized():  # a Ray worker (a Serve replica): already joined
        return loaded
    if is_loopback(node_ip) and loaded is None:
        os.environ[LOOPBACK_ENV] = "0"
    try:
        import ray
        import ray._private.ray_constants as constants
    except ImportError:
        raise RayUnavailable("SCISSOR_ENGINE=ray needs Ray: pip install 'scissor-stream[ray]'") from None
    if is_loopback(node_ip) and constants.ENABLE_RAY_CLUSTER:
        raise RayUnavailable(
            f"Ray was imported before {LOOPBACK_ENV}=0 was set: it would replace {node_ip} with this "
            "machine's interface address; set the variable in the environment before starting"
        )
    return ray


def connect(settings: Settings) -> ModuleType:
    """`ray.init` on `SCISSOR_RAY__ADDRESS` (empty: a one-machine Ray started here) with this process's node
    address `SCISSOR_RAY__NODE_IP`; idempotent. Returns the ray module."""
    options = settings.ray
    ray = import_ray(options.node_ip)
    if not ray.is_initialized():
        starting = {} if options.address else {"include_dashboard": False}  # a Ray of our own: no dashboard
        ray.init(
            address=options.address or None,
            namespace=options.namespace,
            _node_ip_address=options.node_ip,
            log_to_driver=False,
            **starting,
        )
    return ray
