"""Run the test suite in a QEMU guest on a stock Debian kernel.

Why: a stock kernel is what almost every user has, and it offers what a CI machine
like ours may lack: sch_netem (delay, jitter, netem loss) and the openvswitch kernel
module (the OVS kernel datapath). `sudo make vm-test` exercises both.

    distros.py the Debian releases a guest can run (bookworm = 12, trixie = 13)
    image.py   a guest image: a Debian release + cloud kernel + what bootstrap.sh
               installs, built once with mmdebstrap and cached outside the repo (one per
               release), keyed by a hash of its inputs
    qemu.py    the accelerator probe (KVM where it works, else TCG) and the boot
    guest.py   one job in a fresh guest: the checkout goes in on a work disk, the
               results come back from it
    report.py  junit.xml + guest facts -> the one-line summary
    init.sh    PID 1 of the guest (baked into the image)
    guest.sh   what PID 1 runs from the work disk (part of the checkout)

Everything here uses the standard library only, so it runs before the venv exists.
"""
