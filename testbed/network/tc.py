"""Traffic-control trees the project owns on every interface it shapes.

Shape (design.md §4), per egress interface, built from validated numbers only::

    root  1:      htb; unclassified traffic -> the default leaf
    class 1:1     rate = ceil = link rate                 (the link)
    class 1:10+i  one leaf per priority band i            (1 band unless prioritizing)
    qdisc 10+i:   pfifo limit queue_pkts, or netem (delay, jitter, loss, limit)

With one band the leaf gets the whole link rate. With several, every leaf has a
tiny guaranteed rate and may borrow up to the link rate, and HTB serves lower
`prio` first: a strict-ish priority that still cannot starve a class forever.

Builders return argument lists for ``tc`` (without the program name) so the caller
can run them one by one or in a batch.
"""

from __future__ import annotations

from testbed.spec.schema import LinkParams

ROOT = "1:"
LINK_CLASS = "1:1"
FIRST_LEAF = 10  # leaf class minor ids start here: 1:10, 1:11, ... (tc reads them as hex)
FIRST_LEAF_HEX = 0x10

# HTB's quantum decides how borrowing classes share; one MTU-sized frame keeps the
# round-robin fine-grained and silences the "quantum is big" warning at high rates.
QUANTUM_BYTES = 1514
# Token-bucket depth. HTB's default (rate/HZ + MTU, ~8 kB at 50 Mb/s) is shorter than
# the dequeue latency of a busy 2-core VM: tokens overflow and TCP got 0.90-0.92 of a
# 50 Mb/s link. With 1-5 ms of rate it got 0.95 at 10, 50 and 100 Mb/s (0.956 is the
# header-limited ideal); 2 ms keeps bursts to ~16 full frames at 100 Mb/s.
BURST_S = 0.002
BURST_MIN_BYTES = 4 * 1514
# Guaranteed rate of each band when there are several: small enough that priority,
# not the guarantee, decides who gets the link.
BAND_FLOOR_KBIT = 8


def burst(mbps: float) -> str:
    """HTB token-bucket depth: `BURST_S` worth of the link rate, at least a few frames."""
    return f"{max(BURST_MIN_BYTES, round(mbps * 1e6 / 8 * BURST_S))}b"


def rate(mbps: float) -> str:
    """A tc rate in kbit (integer, so tc parses it exactly)."""
    return f"{max(1, round(mbps * 1000))}kbit"


def leaf_classid(band: int) -> str:
    """Class id of leaf `band` (0 = highest priority)."""
    return f"1:{FIRST_LEAF + band}"


def leaf_handle(band: int) -> str:
    """Handle of the qdisc under leaf `band`."""
    return f"{FIRST_LEAF + band}:"


def needs_netem(params: LinkParams, netem_loss: bool) -> bool:
    """Whether this direction's leaf must be netem rather than a plain pfifo."""
    return bool(params.delay_ms or params.jitter_ms or (netem_loss and params.loss_pct))


def leaf_qdisc(params: LinkParams, netem_loss: bool, seed: int | None) -> list[str]:
    """The leaf queue: pfifo of `queue_pkts`, or netem when delay/jitter/loss need it."""
    if not needs_netem(params, netem_loss):
        return ["pfifo", "limit", str(params.queue_pkts)]
    args = ["netem", "limit", str(params.queue_pkts)]
    if params.delay_ms or params.jitter_ms:
        args += ["delay", f"{params.delay_ms:g}ms"]
        if params.jitter_ms:
            args.append(f"{params.jitter_ms:g}ms")
    if netem_loss and params.loss_pct:
        args += ["loss", "random", f"{params.loss_pct:g}%"]
        if seed is not None:
            args += ["seed", str(seed)]
    return args


def link_tree(
    dev: str,
    params: LinkParams,
    netem_loss: bool = False,
    seed: int | None = None,
    bands: int = 1,
) -> list[list[str]]:
    """Commands replacing `dev`'s root qdisc with the project's tree for one direction.

    `netem_loss`: emulate `loss_pct` with netem (else loss is another backend's job).
    `seed`: netem's PRNG seed, where the installed tc supports it.
    `bands`: number of priority leaves; unclassified traffic goes to the last one.
    """
    link = rate(params.bw_mbps)
    bucket = burst(params.bw_mbps)
    guaranteed = link if bands == 1 else f"{BAND_FLOOR_KBIT}kbit"
    default = str(FIRST_LEAF + bands - 1)
    cmds = [["qdisc", "replace", "dev", dev, "root", "handle", ROOT, "htb", "default", default]]
    cmds.append(_htb_class(dev, ROOT, LINK_CLASS, link, link, bucket))
    for band in range(bands):
        cmds.append(_htb_class(dev, LINK_CLASS, leaf_classid(band), guaranteed, link, bucket, band))
    return cmds + leaves(dev, params, netem_loss, seed, bands)


def _htb_class(
    dev: str, parent: str, classid: str, guaranteed: str, ceil: str, bucket: str, prio=None
) -> list[str]:
    args = ["class", "add", "dev", dev, "parent", parent, "classid", classid, "htb"]
    args += ["rate", guaranteed, "ceil", ceil, "burst", bucket, "cburst", bucket]
    args += [] if prio is None else ["prio", str(prio)]
    return args + ["quantum", str(QUANTUM_BYTES)]


def leaves(
    dev: str, params: LinkParams, netem_loss: bool, seed: int | None, bands: int = 1
) -> list[list[str]]:
    """(Re)place the queue under every leaf class, e.g. to switch netem loss on later."""
    queue = leaf_qdisc(params, netem_loss, seed)
    return [_leaf(dev, band, queue) for band in range(bands)]


def _leaf(dev: str, band: int, queue: list[str]) -> list[str]:
    where = ["dev", dev, "parent", leaf_classid(band), "handle", leaf_handle(band)]
    return ["qdisc", "replace", *where, *queue]


# Priority class c is carried as DSCP CLASS_DSCP[c]: class selectors from CS7 down, so
# with 8 classes the lowest is CS0, the DSCP of unmarked traffic. Unmarked packets
# always land in the lowest band (HTB's default class).
CLASS_DSCP = tuple(8 * (7 - c) for c in range(8))


def dscp_filters(dev: str, bands: int) -> list[list[str]]:
    """u32 filters steering each class's DSCP to its band (ECN bits ignored)."""
    head = ["filter", "add", "dev", dev, "parent", ROOT, "protocol", "ip", "prio", "1", "u32"]
    # the lowest band is HTB's default: it needs no filter
    return [[*head, *_tos_match(band), "flowid", leaf_classid(band)] for band in range(bands - 1)]


def _tos_match(band: int) -> list[str]:
    return ["match", "ip", "tos", f"0x{CLASS_DSCP[band] << 2:02x}", "0xfc"]
