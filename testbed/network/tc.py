"""Traffic-control trees the project owns on every interface it shapes.

Shape (design.md §4), per egress interface, built from validated numbers only::

    root  5:      netem: delay, jitter, netem loss   (only where one of them is asked for)
    qdisc 1:      htb; the root, or netem's child    unclassified -> the default leaf
    class 1:1     rate = ceil = link rate            (the link)
    class 1:10+i  one leaf per priority band i       (1 band unless prioritizing)
    qdisc 10+i:   pfifo limit band_limits(...)[i]    (the buffer, on every direction)

netem sits above the shaper (the tc-netem manual's recipe for rate plus delay), not in
the leaf, for two reasons. Every direction then has the same buffer, a pfifo of
`queue_pkts`, whether or not it is delayed or lossy; a netem leaf would queue in its
own time-ordered fifo, whose limit also counts the packets still in their delay. And
its drops can be told apart: netem counts its loss and, again, every drop of its
child HTB, while HTB counts only queue overflow, so emulated loss = netem drops - HTB
drops (in the leaf, HTB counts netem's loss as drops too, and the two cancel).

With one band the leaf gets the whole link rate. With several, every leaf has a
tiny guaranteed rate and may borrow up to the link rate, and HTB serves lower
`prio` first: a strict-ish priority that still cannot starve a class forever.

The port's buffer is `queue_pkts` packets whatever the number of bands, so that a
prioritized run and the run it is compared with hold the same number of packets per
port. Each band has its own fifo (HTB needs one per leaf to reorder by priority, and
no Linux qdisc both shapes per band and shares one limit), so the buffer is *split*:
every band gets queue_pkts // bands packets and the remainder goes to the highest
bands, one each (`band_limits`). That is a statically partitioned switch buffer; a
shared buffer with dynamic thresholds, as in most switch ASICs, is not modelled. The
spec requires queue_pkts >= priority_classes wherever bands are built, so that no
band is left without a buffer. Compare a prioritized run with
`network.priority_bands: always` under `priority: none` (the same split, nothing
marked) to separate the priorities from the partitioning.

Builders return argument lists for ``tc`` (without the program name) so the caller
can run them one by one or in a batch.
"""

from __future__ import annotations

from testbed.spec.schema import DEFAULT_SHAPER_BURST_MS, LinkParams

NETEM = "5:"
NETEM_CHILD = "5:1"  # netem's one class, where HTB hangs
ROOT = "1:"  # the HTB qdisc (the root unless netem is above it)
LINK_CLASS = "1:1"
FIRST_LEAF = 10  # leaf class minor ids start here: 1:10, 1:11, ... (tc reads them as hex)
FIRST_LEAF_HEX = 0x10

# HTB's quantum decides how borrowing classes share; one MTU-sized frame keeps the
# round-robin fine-grained and silences the "quantum is big" warning at high rates.
QUANTUM_BYTES = 1514
# Token-bucket depth (`network.shaper_burst_ms`): HTB can only make up for a late
# dequeue with the tokens its bucket holds, so the bucket must cover the machine's
# dequeue latency. HTB's default (rate/HZ + MTU, ~8 kB at 50 Mb/s) is too short for a
# busy 2-core VM: TCP got 0.90-0.92 of a 50 Mb/s link. With 1-5 ms of rate it got 0.95
# at 10, 50 and 100 Mb/s there (0.956 is the header-limited ideal), and 2 ms, the
# default, keeps bursts to ~16 full frames at 100 Mb/s. Under TCG emulation (the CI
# guest) dequeues are later: 2 ms gave 0.91 at 50 and 0.83 at 100 Mb/s, 10 ms 0.955.
BURST_MIN_BYTES = 4 * 1514
# Guaranteed rate of each band when there are several: small enough that priority,
# not the guarantee, decides who gets the link.
BAND_FLOOR_KBIT = 8
# netem only delays and drops; the buffer is the pfifo below HTB. A wire holds whatever
# is on it, so the delay line must never overflow: its limit is far above any backlog
# the shaped links feeding it can build (packets are only held while in flight).
DELAY_LINE_PKTS = 1_000_000


def burst(mbps: float, burst_ms: float = DEFAULT_SHAPER_BURST_MS) -> str:
    """HTB token-bucket depth: `burst_ms` worth of the link rate, at least a few frames."""
    return f"{max(BURST_MIN_BYTES, round(mbps * 1e6 / 8 * burst_ms / 1000))}b"


def rate(mbps: float) -> str:
    """A tc rate in kbit (integer, so tc parses it exactly)."""
    return f"{max(1, round(mbps * 1000))}kbit"


def band_limits(queue_pkts: int, bands: int) -> list[int]:
    """Per-band fifo limits that add up to `queue_pkts`: an even split, the remainder
    to the highest-priority bands (band 0 first). Needs queue_pkts >= bands."""
    if queue_pkts < bands:
        raise ValueError(f"{queue_pkts} packets cannot buffer {bands} bands")
    share, extra = divmod(queue_pkts, bands)
    return [share + (band < extra) for band in range(bands)]


def leaf_classid(band: int) -> str:
    """Class id of leaf `band` (0 = highest priority)."""
    return f"1:{FIRST_LEAF + band}"


def leaf_handle(band: int) -> str:
    """Handle of the qdisc under leaf `band`."""
    return f"{FIRST_LEAF + band}:"


def needs_netem(params: LinkParams, netem_loss: bool) -> bool:
    """Whether this direction gets a netem root (delay, jitter, or loss done by netem)."""
    return bool(params.delay_ms or params.jitter_ms or (netem_loss and params.loss_pct))


def netem_args(params: LinkParams, netem_loss: bool, seed: int | None, loss_on: bool) -> list[str]:
    """netem's options: the delay line's limit, delay and jitter, and loss once on."""
    args = ["netem", "limit", str(DELAY_LINE_PKTS)]
    if params.delay_ms or params.jitter_ms:
        args += ["delay", f"{params.delay_ms:g}ms"]
        if params.jitter_ms:
            args.append(f"{params.jitter_ms:g}ms")
    if netem_loss and params.loss_pct and loss_on:
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
    loss_on: bool = True,
    burst_ms: float = DEFAULT_SHAPER_BURST_MS,
) -> list[list[str]]:
    """Commands replacing `dev`'s root qdisc with the project's tree for one direction.

    `netem_loss`: emulate `loss_pct` with netem (else loss is another backend's job).
    `seed`: netem's PRNG seed, where the installed tc supports it.
    `bands`: number of priority leaves; unclassified traffic goes to the last one.
    `loss_on`: False to build the tree loss-free; `switch_loss_on` adds it later. The
    netem is there from the start either way: the kernel cannot turn a qdisc into
    another kind in place, and replacing one would open a gap in the tree.
    `burst_ms`: depth of the token buckets, in ms of the link rate.
    """
    link = rate(params.bw_mbps)
    bucket = burst(params.bw_mbps, burst_ms)
    guaranteed = link if bands == 1 else f"{BAND_FLOOR_KBIT}kbit"
    default = str(FIRST_LEAF + bands - 1)
    cmds, htb_at = [], ["root"]
    if needs_netem(params, netem_loss):
        cmds.append(_netem(dev, params, netem_loss, seed, loss_on, "replace"))
        htb_at = ["parent", NETEM_CHILD]
    cmds.append(
        ["qdisc", "replace", "dev", dev, *htb_at, "handle", ROOT, "htb", "default", default]
    )
    cmds.append(_htb_class(dev, ROOT, LINK_CLASS, link, link, bucket))
    for band, limit in enumerate(band_limits(params.queue_pkts, bands)):
        cmds.append(_htb_class(dev, LINK_CLASS, leaf_classid(band), guaranteed, link, bucket, band))
        where = ["dev", dev, "parent", leaf_classid(band), "handle", leaf_handle(band)]
        cmds.append(["qdisc", "replace", *where, "pfifo", "limit", str(limit)])
    return cmds


def switch_loss_on(dev: str, params: LinkParams, seed: int | None) -> list[str]:
    """The command that starts netem loss on a tree built with ``loss_on=False``."""
    return _netem(dev, params, True, seed, True, "change")


def _netem(dev, params, netem_loss, seed, loss_on, verb: str) -> list[str]:
    where = ["dev", dev, "root", "handle", NETEM]
    return ["qdisc", verb, *where, *netem_args(params, netem_loss, seed, loss_on)]


def _htb_class(
    dev: str, parent: str, classid: str, guaranteed: str, ceil: str, bucket: str, prio=None
) -> list[str]:
    args = ["class", "add", "dev", dev, "parent", parent, "classid", classid, "htb"]
    args += ["rate", guaranteed, "ceil", ceil, "burst", bucket, "cburst", bucket]
    args += [] if prio is None else ["prio", str(prio)]
    return args + ["quantum", str(QUANTUM_BYTES)]


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
