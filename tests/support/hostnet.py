"""The host side of the real test node: its sealed network and everything a run
leaves in the kernel, set up and torn down idempotently.

A kubelet with containerd and kube-proxy changes the machine itself: a bridge
with a veth per pod, network namespaces, iptables chains in every table, tmpfs
and overlay mounts, ``kubepods`` cgroups and a few sysctls. None of that goes
away when a process dies, so :func:`clean` removes all of it and runs both
before a cluster starts (a crashed run left it) and after it stops.

Sealing (see ``shared`` REAL-CLUSTER notes): pods live on ``BRIDGE`` in
``POD_CIDR``; the node's own address is a /32 on ``lo`` (reachable from pods,
unlike 127.x); the Service CIDR is routed into the bridge so un-NATed service
traffic can never take the default route; a chain first in mangle FORWARD drops
anything that enters or leaves the bridge from or to another interface; no
masquerade is installed for pod traffic and CoreDNS has no upstream. The only
addresses anything here talks to are 127.0.0.1, ``NODE_IP`` and the pods.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

BRIDGE = "kanaria0"
POD_CIDR = "10.244.0.0/24"
POD_GATEWAY = "10.244.0.1"
SERVICE_CIDR = "10.96.0.0/16"
NODE_IP = "10.250.0.1"
"""The node's address: a /32 on ``lo``, where the apiserver, kubelet and CoreDNS listen."""
SEAL_CHAIN = "KANARIA-SEAL"
CHAIN_PREFIXES = ("KUBE-", "CNI-", SEAL_CHAIN)
"""iptables chains a run creates (kube-proxy, the CNI portmap plugin, the seal)."""
SYSCTLS = (
    "vm/overcommit_memory",  # set by the kubelet
    "kernel/panic",  # set by the kubelet
    "kernel/panic_on_oops",  # set by the kubelet
    "net/ipv4/ip_forward",  # pod -> ClusterIP -> pod is routed back into the bridge
    "net/bridge/bridge-nf-call-iptables",  # kube-proxy's DNAT for bridged traffic
)
NETNS_DIR = Path("/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def sh(*args: str, check: bool = True, input: str | None = None) -> str:
    """Run a command; return stdout. ``check`` raises with its stderr on failure."""
    result = subprocess.run(list(args), capture_output=True, text=True, input=input, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}"
        )
    return result.stdout


# --- sysctls ---------------------------------------------------------------------


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name


def save_sysctls(record: Path) -> None:
    """Record the values to restore at teardown (kept on disk for a crashed run)."""
    record.write_text(json.dumps(sysctl_values()))


def restore_sysctls(record: Path) -> None:
    """Write back the recorded values and forget the record."""
    if not record.exists():
        return
    for name, value in json.loads(record.read_text()).items():
        with contextlib.suppress(OSError):
            _sysctl_path(name).write_text(value + "\n")
    record.unlink()


def set_sysctl(name: str, value: str) -> None:
    _sysctl_path(name).write_text(value + "\n")


# --- the network -----------------------------------------------------------------


ROUTE_TYPES = {"local", "broadcast", "multicast", "unreachable", "prohibit", "blackhole", "throw"}


def check_addresses_free() -> None:
    """Fail fast if the machine already routes the node's, pods' or Services' addresses
    (another network there would make the test cluster reach it). Run after
    :func:`clean`, so none of the routes seen are this project's own."""
    ours = [ipaddress.ip_network(n) for n in (POD_CIDR, SERVICE_CIDR, f"{NODE_IP}/32")]
    for line in sh("ip", "-4", "-o", "route", "show", "table", "all").splitlines():
        fields = line.split()
        if fields and fields[0] in ROUTE_TYPES:
            fields = fields[1:]
        if not fields or fields[0] == "default":
            continue
        try:
            net = ipaddress.ip_network(fields[0], strict=False)
        except ValueError:
            continue
        clash = [str(o) for o in ours if o.overlaps(net)]
        if clash and not net.is_loopback:
            raise RuntimeError(
                f"the test node's addresses {', '.join(clash)} overlap the route '{line}' "
                "on this machine; the real-node tests need them free"
            )


def setup_network() -> None:
    """Node address, bridge, Service route and the seal chain, before any pod starts."""
    check_addresses_free()
    sh("ip", "addr", "add", f"{NODE_IP}/32", "dev", "lo")
    sh("ip", "link", "add", BRIDGE, "type", "bridge")
    sh("ip", "addr", "add", f"{POD_GATEWAY}/{POD_CIDR.split('/')[1]}", "dev", BRIDGE)
    sh("ip", "link", "set", BRIDGE, "up")
    sh("ip", "route", "add", SERVICE_CIDR, "dev", BRIDGE)
    for cmd in ("iptables", "ip6tables"):
        sh(cmd, "-t", "mangle", "-N", SEAL_CHAIN)
        sh(cmd, "-t", "mangle", "-A", SEAL_CHAIN, "-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP")
        sh(cmd, "-t", "mangle", "-A", SEAL_CHAIN, "-o", BRIDGE, "!", "-i", BRIDGE, "-j", "DROP")
        sh(cmd, "-t", "mangle", "-I", "FORWARD", "1", "-j", SEAL_CHAIN)
    with contextlib.suppress(OSError):
        subprocess.run(["modprobe", "br_netfilter"], capture_output=True, check=False)
    set_sysctl("net/ipv4/ip_forward", "1")
    if _sysctl_path("net/bridge/bridge-nf-call-iptables").exists():
        set_sysctl("net/bridge/bridge-nf-call-iptables", "1")


def seal_rules() -> list[str]:
    """The seal chain as iptables lists it (tests check it is still first in FORWARD)."""
    return (
        sh("iptables", "-t", "mangle", "-S", "FORWARD").splitlines()[1:2]
        + sh("iptables", "-t", "mangle", "-S", SEAL_CHAIN).splitlines()
    )


def _clean_iptables() -> None:
    """Drop every rule and chain a run made, in every table, for IPv4 and IPv6.

    The tables are saved, filtered and restored whole, so rules of other tools
    (podman's NETAVARK-* chains) stay exactly as they were.
    """
    for save, restore in (
        ("iptables-save", "iptables-restore"),
        ("ip6tables-save", "ip6tables-restore"),
    ):
        dump = sh(save, check=False)
        if not any(p in dump for p in CHAIN_PREFIXES):
            continue
        kept = [line for line in dump.splitlines() if not any(p in line for p in CHAIN_PREFIXES)]
        sh(restore, input="\n".join(kept) + "\n")


def _delete_link(name: str) -> None:
    sh("ip", "link", "del", name, check=False)


def _bridge_ports() -> list[str]:
    out = sh("ip", "-o", "link", "show", "master", BRIDGE, check=False)
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def clean_network() -> None:
    for port in _bridge_ports():
        _delete_link(port)
    sh("ip", "route", "del", SERVICE_CIDR, "dev", BRIDGE, check=False)
    _delete_link(BRIDGE)
    sh("ip", "addr", "del", f"{NODE_IP}/32", "dev", "lo", check=False)
    _clean_iptables()
    if NETNS_DIR.is_dir():
        for ns in NETNS_DIR.glob("cni-*"):
            subprocess.run(["umount", "-l", str(ns)], capture_output=True, check=False)
            with contextlib.suppress(OSError):
                ns.unlink()


# --- processes, mounts, cgroups --------------------------------------------------


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def pids_mentioning(marker: str) -> list[int]:
    """PIDs whose command line contains ``marker`` (a path only this run uses)."""
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if (
            entry.name.isdigit()
            and int(entry.name) != me
            and marker.encode() in _cmdline(int(entry.name))
        ):
            found.append(int(entry.name))
    return found


def kill_all(pids: Iterable[int]) -> None:
    """SIGKILL by PID; already gone is fine."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def kubepods_cgroups() -> list[Path]:
    """Every ``kubepods`` cgroup directory the kubelet made, deepest first."""
    found: list[Path] = []
    if not CGROUP_ROOT.is_dir():
        return found
    for hierarchy in CGROUP_ROOT.iterdir():
        top = hierarchy / "kubepods"
        if top.is_dir():
            found.extend(Path(p) for p, _, _ in os.walk(top))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _clean_cgroups() -> None:
    groups = kubepods_cgroups()
    for group in groups:  # container processes whose shim is gone still sit here
        procs_file = group / "cgroup.procs"
        with contextlib.suppress(OSError):
            kill_all(int(p) for p in procs_file.read_text().split())
    for _ in range(50):
        left = [g for g in kubepods_cgroups() if g.exists()]
        for group in left:
            with contextlib.suppress(OSError):
                group.rmdir()
        if not kubepods_cgroups():
            return
        time.sleep(0.1)


def unmount_under(root: Path) -> None:
    """Lazily unmount everything mounted at or below ``root``, deepest first."""
    prefix = str(root)
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def clean(root: Path, sysctl_record: Path) -> None:
    """Remove everything a run under ``root`` left: processes, pods' processes,
    mounts, network, iptables, cgroups, sysctls. Safe to run when nothing is there."""
    kill_all(pids_mentioning(f"{root}/"))  # every component and containerd shim
    _clean_cgroups()
    unmount_under(root)
    clean_network()
    # containerd 1.6 keeps shim sockets and runc state at fixed paths; a system
    # containerd would own them, so touch them only when none is running.
    run_containerd = Path("/run/containerd")
    if not (run_containerd / "containerd.sock").exists():
        for leftover in (run_containerd / "runc" / "k8s.io", run_containerd / "s"):
            if leftover.is_dir():
                subprocess.run(["rm", "-rf", str(leftover)], capture_output=True, check=False)
    restore_sysctls(sysctl_record)


def footprint(root: Path) -> dict[str, list[str]]:
    """What a run under ``root`` has left on the machine right now (all empty when
    nothing), for tests of :func:`clean` and of teardown."""
    chains = []
    for family in ("iptables", "ip6tables"):
        for line in sh(f"{family}-save", check=False).splitlines():
            if line.startswith(":") and line[1:].startswith(CHAIN_PREFIXES):
                chains.append(f"{family} {line.split()[0][1:]}")
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point == str(root) or point.startswith(f"{root}/"):
            mounts.append(point)
    links = sh("ip", "-o", "link", "show", "master", BRIDGE, check=False).splitlines()
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        links.append(BRIDGE)
    return {
        "processes": [str(p) for p in pids_mentioning(f"{root}/")],
        "iptables chains": chains,
        "links": links,
        "node address": [
            a for a in sh("ip", "-o", "addr", "show", "dev", "lo").split() if a.startswith(NODE_IP)
        ],
        "netns": sorted(p.name for p in NETNS_DIR.glob("cni-*")) if NETNS_DIR.is_dir() else [],
        "cgroups": [str(p) for p in kubepods_cgroups()],
        "mounts": mounts,
    }


def sysctl_values() -> dict[str, str]:
    """The current values of the sysctls a run changes."""
    return {n: _sysctl_path(n).read_text().strip() for n in SYSCTLS if _sysctl_path(n).exists()}
