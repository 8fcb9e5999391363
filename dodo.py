from facsimile.dodo import *  # noqa: F403
