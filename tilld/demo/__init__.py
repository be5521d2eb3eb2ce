"""``tilld demo``: the embedded default, a whole till installation on one machine.

The package holds the demo's catalog (catalog.json, also the reference
back-end's seed) and nothing that imports the daemon: the back-end
simulator reads the catalog from here at every start, and importing the
whole till for a JSON file cost it 0.4 s of CPU. The demo itself is run.py.
"""
