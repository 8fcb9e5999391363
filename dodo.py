from facsimile.dodo import *
