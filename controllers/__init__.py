"""OpenFlow controller of the testbed (an os-ken app) and its routing/priority policies.

Policies (`routing`, `priority`) are plain Python returning OpenFlow messages; `app`
is the thin os-ken dispatcher; ``python -m controllers`` runs it as a process.
"""
