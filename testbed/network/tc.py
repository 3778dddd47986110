"""Traffic-control trees the project owns on every interface it shapes.

Shape (design.md §4), per interface, built from validated numbers only::

    root  1:    htb, unclassified traffic -> 1:10
    class 1:1   rate = ceil = link rate            (the link)
    class 1:10  rate = ceil = link rate, prio 0    (one leaf; priority bands add 1:11..)
    qdisc 10:   pfifo limit queue_pkts             (the leaf's queue)

Builders return argument lists for ``tc`` (without the program name) so the caller
can run them one by one or in a batch.
"""

from __future__ import annotations

from testbed.spec.schema import LinkParams

ROOT = "1:"
LINK_CLASS = "1:1"
FIRST_LEAF = 10  # leaf class minor ids start here: 1:10, 1:11, ...

# HTB's quantum decides how borrowing classes share; one MTU-sized frame keeps the
# round-robin fine-grained and silences the "quantum is big" warning at high rates.
QUANTUM_BYTES = 1514


def rate(mbps: float) -> str:
    """A tc rate in kbit (integer, so tc parses it exactly)."""
    return f"{max(1, round(mbps * 1000))}kbit"


def leaf_classid(index: int) -> str:
    """Class id of leaf `index` (0 = the default/best-effort leaf)."""
    return f"1:{FIRST_LEAF + index}"


def leaf_handle(index: int) -> str:
    """Handle of the qdisc under leaf `index`."""
    return f"{FIRST_LEAF + index}:"


def shaping_tree(dev: str, params: LinkParams) -> list[list[str]]:
    """Commands that replace `dev`'s root qdisc with the single-leaf HTB tree."""
    link = rate(params.bw_mbps)
    return [
        ["qdisc", "replace", "dev", dev, "root", "handle", ROOT, "htb",
         "default", str(FIRST_LEAF)],
        ["class", "add", "dev", dev, "parent", ROOT, "classid", LINK_CLASS, "htb",
         "rate", link, "ceil", link, "quantum", str(QUANTUM_BYTES)],
        ["class", "add", "dev", dev, "parent", LINK_CLASS, "classid", leaf_classid(0), "htb",
         "rate", link, "ceil", link, "prio", "0", "quantum", str(QUANTUM_BYTES)],
        ["qdisc", "add", "dev", dev, "parent", leaf_classid(0), "handle", leaf_handle(0),
         "pfifo", "limit", str(params.queue_pkts)],
    ]


def delete_root(dev: str) -> list[str]:
    """Command removing whatever root qdisc `dev` has (back to the kernel default)."""
    return ["qdisc", "del", "dev", dev, "root"]
