"""Imported once by the send processes' fork server (``activities.send_process.PRELOAD``).

What is loaded here, every child forked from the server has from its first batch on, instead of
paying for it in each new child: the ZIP codes' and area codes' zones (``services.locations``,
about half a second). Last, the server's objects are frozen out of the garbage collector: a
child's first collection would otherwise traverse them all, copying every page it touched (about
0.3 s per child).
"""

from services import locations
from worker import tune_gc

locations.warm()
tune_gc()
