"""Test hosts apart on one machine: each role in its own Linux network namespace, joined by veth pairs to a
bridge, with addresses in a /24 of 198.18.0.0/15 (RFC 2544's range for testing network devices), one per
run. No traffic leaves the machine: the bridge has no uplink, and the root namespace joins it only to read
rows and to receive webhooks. Everything made here carries this run's prefix and is removed by `close()`
(and a stale set from a killed run by the next `HostNet`).

Faults, applied inside one host's namespace:
- `partition(host, peer)`: nftables drops every packet to and from the peer (both directions);
- `loss(host, percent, peer=None, direction=...)`: nftables drops a random share (`numgen random`);
- `link(host, up=False)`: the host's interface down, as a pulled cable; `flap()` repeats it.
This kernel has no netem qdisc (CONFIG_NET_SCH_NETEM is off), so latency and jitter come from
`tests/support/latency_relay.py`, a TCP relay in the far host's namespace that holds each chunk.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# Every run's hosts are in it; each run takes its own /24, so two runs may share a machine.
RANGE = "198.18.0.0/15"
PREFIX = "vgnet"


def available() -> str | None:
    """Why the harness cannot run here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (make tools installs nftables)"
    probe = f"{PREFIX}probe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.strip()}"
    try:
        nft = subprocess.run(
            ["ip", "netns", "exec", probe, "nft", "add", "table", "inet", "t"], capture_output=True
        )
        if nft.returncode != 0:
            return "nftables does not work in a network namespace here"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done


@dataclass(frozen=True)
class Host:
    name: str
    netns: str
    address: str
    ifname: str = "eth0"

    def argv(self, *command: str) -> list[str]:
        """``command`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *command]


class HostNet:
    """A bridge in a hub namespace, one namespace per host, and the root namespace on the bridge as `.1`."""

    def __init__(self, names: Sequence[str]) -> None:
        remove_stale()
        self.tag = f"{PREFIX}{os.getpid()}"  # interface names: at most 5 + 7 + 3 = 15 characters
        self.hub = f"{self.tag}-hub"
        self.hosts: dict[str, Host] = {}
        subnet = f"198.18.{os.getpid() % 250 + 1}"
        self.root_address = f"{subnet}.1"
        self._root_if = f"{self.tag}r"
        sh("ip", "netns", "add", self.hub)
        self._in_hub("ip", "link", "add", "br0", "type", "bridge")
        self._in_hub("ip", "link", "set", "br0", "up")
        self._veth(self._root_if, None, self.root_address)
        for i, name in enumerate(names, start=2):
            netns = f"{self.tag}-{name}"
            sh("ip", "netns", "add", netns)
            sh("ip", "-n", netns, "link", "set", "lo", "up")
            host = Host(name, netns, f"{subnet}.{i}")
            self._veth(f"{self.tag}{i}", netns, host.address)
            self.hosts[name] = host
            sh(*host.argv("nft", "add", "table", "inet", "vigil_faults"))
            for chain, hook in (("out", "output"), ("in", "input")):
                sh(
                    *host.argv(
                        "nft",
                        "add",
                        "chain",
                        "inet",
                        "vigil_faults",
                        chain,
                        f"{{ type filter hook {hook} priority 0; }}",
                    )
                )

    def _in_hub(self, *argv: str) -> None:
        sh("ip", "netns", "exec", self.hub, *argv)

    def _veth(self, outer: str, netns: str | None, address: str) -> None:
        """A veth pair: one end on the bridge, the other in ``netns`` (None: the root namespace)."""
        peer = outer + "b"
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", peer)
        sh("ip", "link", "set", peer, "netns", self.hub)
        self._in_hub("ip", "link", "set", peer, "master", "br0")
        self._in_hub("ip", "link", "set", peer, "up")
        if netns is None:
            sh("ip", "addr", "add", f"{address}/24", "dev", outer)
            sh("ip", "link", "set", outer, "up")
            return
        sh("ip", "link", "set", outer, "netns", netns)
        sh("ip", "-n", netns, "link", "set", outer, "name", "eth0")
        sh("ip", "-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        sh("ip", "-n", netns, "link", "set", "eth0", "up")

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    # -- faults ------------------------------------------------------------------------------------

    def _rule(self, host: str, chain: str, rule: str) -> None:
        sh(*self.hosts[host].argv("nft", "add", "rule", "inet", "vigil_faults", chain, *rule.split()))

    def partition(self, host: str, *peers: str) -> None:
        """``host`` can neither reach nor be reached by ``peers`` (host names, or "root" for the test)."""
        for peer in peers:
            address = self.root_address if peer == "root" else self.hosts[peer].address
            self._rule(host, "out", f"ip daddr {address} drop")
            self._rule(host, "in", f"ip saddr {address} drop")

    def loss(self, host: str, percent: int, *, peer: str | None = None, directions: str = "out in") -> None:
        """Drop ``percent`` % of ``host``'s packets at random (to/from ``peer`` only, if given)."""
        for chain in directions.split():
            match = ""
            if peer is not None:
                address = self.root_address if peer == "root" else self.hosts[peer].address
                match = f"ip {'daddr' if chain == 'out' else 'saddr'} {address} "
            self._rule(host, chain, f"{match}numgen random mod 100 < {percent} counter drop")

    def dropped(self, host: str) -> dict[str, int]:
        """Packets the host's loss rules have dropped so far, per chain ("out", "in"); heal() resets them."""
        counts = {}
        for chain in ("out", "in"):
            listing = subprocess.run(
                self.hosts[host].argv("nft", "list", "chain", "inet", "vigil_faults", chain),
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            counts[chain] = sum(int(n) for n in re.findall(r"counter packets (\d+)", listing))
        return counts

    def heal(self, host: str | None = None) -> None:
        """Remove every fault rule (of one host, or all) and bring links up."""
        for name in [host] if host else list(self.hosts):
            for chain in ("out", "in"):
                sh(*self.hosts[name].argv("nft", "flush", "chain", "inet", "vigil_faults", chain))
            self.link(name, up=True)

    def link(self, host: str, *, up: bool) -> None:
        h = self.hosts[host]
        sh("ip", "-n", h.netns, "link", "set", "eth0", "up" if up else "down")

    def flap(self, host: str, *, period_s: float, for_s: float) -> None:
        """Down half a period, up half a period, for ``for_s`` seconds; ends up."""
        end = time.monotonic() + for_s
        try:
            while time.monotonic() < end:
                self.link(host, up=False)
                time.sleep(period_s / 2)
                self.link(host, up=True)
                time.sleep(period_s / 2)
        finally:
            self.link(host, up=True)

    def close(self) -> None:
        for host in self.hosts.values():
            sh("ip", "netns", "del", host.netns, check=False)
        sh("ip", "link", "del", self._root_if, check=False)
        sh("ip", "netns", "del", self.hub, check=False)


def remove_stale() -> None:
    """Namespaces and links left by a run that was killed before its clean-up: those whose tag names a
    process that is gone (another run on this machine keeps its own)."""

    def stale(name: str) -> bool:
        digits = name.removeprefix(PREFIX)
        pid = ""
        while digits and digits[0].isdigit():
            pid, digits = pid + digits[0], digits[1:]
        return name.startswith(PREFIX) and pid != "" and not Path(f"/proc/{pid}").exists()

    for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split(" ")[0]
        if stale(name):
            sh("ip", "netns", "del", name, check=False)
    for line in sh("ip", "-o", "link", "show", check=False).stdout.splitlines():
        ifname = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if stale(ifname):
            sh("ip", "link", "del", ifname, check=False)


@contextlib.contextmanager
def host_net(names: Sequence[str]) -> Iterator[HostNet]:
    net = HostNet(names)
    try:
        yield net
    finally:
        net.close()
