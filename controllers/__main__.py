"""Controller process entry point: ``python -m controllers --mlnet-topology T.json ...``.

os-ken 4.x ships no ``osken-manager``; this does what it did: parse the
configuration, then run the app. Listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import logging
import sys

from controllers.compat import app_manager, cfg


def main(argv: list[str] | None = None) -> None:
    """Parse os-ken options from `argv` and run the testbed app until killed."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not any(a.startswith("--ofp-listen-host") for a in args):
        args += ["--ofp-listen-host", "127.0.0.1"]
    import controllers.app  # noqa: F401  (registers the app's options before parsing)

    cfg.CONF(args=args, project="mlnet-testbed")
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app_manager.AppManager.run_apps(["controllers.app"])


if __name__ == "__main__":
    main()
