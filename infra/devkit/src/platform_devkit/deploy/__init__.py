"""The Helm deployment: the official charts (charts.py), the commands of every deploy target
(plan.py) and the command line the Makefile calls (__main__.py)."""
