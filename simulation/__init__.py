"""Portfolio simulation: a policy run over many balances in-process, with the workflow's own core.

``simulation.engine`` drives :mod:`workflows.decisions` exactly as the ``balance-escalation``
workflow does; ``simulation.response`` is the documented model of how patients respond;
``simulation.portfolio`` reads a CSV export or makes a synthetic portfolio; ``simulation.report``
turns results into tables and a chart.
"""
