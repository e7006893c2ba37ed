"""Misuse rules (regulation art. 12, 17): patterns in decisions that suggest a lent, cloned
or stolen card, raised as review flags for staff — never sanctions by themselves.

places.py   where terminals stand: positions by line and station/stop
rules.py    the rules, sans-I/O: decisions in (with their journal index), findings out
watcher.py  the task that follows the journal's durable decisions and journals the flags
"""
