"""``python -m osm.proxy --bootstrap FILE``: the sidecar process, as the local runtime starts it.

The one idea: the lean entry point. It imports `osm.proxy.main` and nothing of the `osm`
command (click, `osm.cli`), which `osm sidecar` would; the arguments are parsed by
`main.command`.
"""

import sys

from osm.proxy import main

sys.exit(main.command(sys.argv[1:]))
